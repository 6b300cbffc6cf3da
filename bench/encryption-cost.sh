#!/usr/bin/env bash
# The cost of encryption at rest on the session hot path: two sessiond nodes on the same Redis
# (and PostgreSQL), one with encryption.keys_file set and one without, loaded by sessiond-bench
# alternately in interleaved rounds (A B, B A, A B, …) so that drift on the machine falls on both
# alike. Prints each round, the median of each node and the ratio, and the CPU time each
# sessiond spent per request (utime + stime from /proc), which other load on the machine
# disturbs far less than throughput. Checks first that the encrypted node's Redis values are
# sealed (the first byte of d is 0xE1) and the other's are not.
#
#   eval "$(scripts/services env)"     # REDIS_URL (and POSTGRES_URL) of running services
#   bench/encryption-cost.sh           # defaults below; override with the variables
#
# BUILD_DIR (build), ROUNDS (6, even), DURATION (10s), CONNECTIONS (64),
# MIX (get=80,put=20), VALUE_BYTES (512), SESSIONS (10000). The nodes leave their sessions under
# the Redis key prefixes encryption-cost-on: and encryption-cost-off: and in the PostgreSQL
# schemas encryption_cost_on and encryption_cost_off.
set -euo pipefail

me=encryption-cost
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
rounds="${ROUNDS:-6}"
keys="$work/keys"
echo "bench:$(openssl rand -base64 32)" >"$keys"

# start_node NAME KEYS_FILE: a node on a free port; sets $port_<NAME> and $pid_<NAME>.
start_node() {
  local name="$1" file="$2"
  start "$name" env SESSIOND_REDIS_URL="$REDIS_URL" \
    SESSIOND_POSTGRES_URL="${POSTGRES_URL:-postgresql://postgres@127.0.0.1:5432/sessiond}" \
    SESSIOND_POSTGRES_SCHEMA="encryption_cost_$name" \
    SESSIOND_REDIS_KEY_PREFIX="encryption-cost-$name:" \
    SESSIOND_NODE_ID="encryption-cost-$name" \
    SESSIOND_ENCRYPTION_KEYS_FILE="$file" \
    SESSIOND_HTTP_LISTEN=127.0.0.1:0 \
    "$sessiond"
}

# shellcheck disable=SC2034 # read through ${!pid_var} and ${!port_var} in run()
port_on="" port_off="" pid_on="" pid_off=""
start_node on "$keys"
start_node off ""
[[ "$(curl -fsS "http://127.0.0.1:$port_on/v1/status" | python3 -c 'import json,sys; print(json.load(sys.stdin)["encryption"]["enabled"])')" == True ]] ||
  die "the node with a keys file does not say encryption is on"

common=(--connections "$connections" --mix "$mix" --value-bytes "$value_bytes" --sessions "$sessions")
# Prefill and warm each node once; the rounds then run without prefill or warmup, so the CPU a
# node spends during a round is the CPU of that round's requests.
for name in on off; do
  port_var="port_$name"
  "$bench" --url "http://127.0.0.1:${!port_var}" "${common[@]}" --duration 3s --warmup 0s \
    --json >/dev/null || die "warm-up run against $name failed"
done


# run NAME: one bench round against node NAME; prints its throughput (req/s), the count of
# errors and unexpected statuses, and the node's CPU microseconds per request.
run() {
  local name="$1" port_var="port_$1" pid_var="pid_$1" t0 t1
  t0="$(cpu_ticks "${!pid_var}")"
  "$bench" --url "http://127.0.0.1:${!port_var}" "${common[@]}" --duration "$duration" \
    --warmup 0s --no-prefill --json >"$work/round.json"
  t1="$(cpu_ticks "${!pid_var}")"
  python3 -c 'import json,sys
p = json.load(open(sys.argv[1]))["phases"]["sessiond"]
bad = p["errors"]["total"] + sum(n for s, n in p["status"].items() if s not in ("200", "201"))
cpu_us = (int(sys.argv[3]) - int(sys.argv[2])) * int(sys.argv[4]) / max(p["requests"], 1)
print("%.1f %d %.2f" % (p["throughput_rps"], bad, cpu_us))' "$work/round.json" "$t0" "$t1" "$tick_us"
}

# The warm-up wrote sessions through each node: the encrypted node's are sealed, the other's not.
first_byte() { # prefix: the first byte (hex) of one session's d under that prefix
  local key
  key="$(redis-cli -u "$REDIS_URL" --scan --pattern "$1s{*" | head -n 1)"
  redis-cli -u "$REDIS_URL" --no-raw HGET "$key" d | head -c 5
}
[[ "$(first_byte encryption-cost-on:)" == '"\xe1' ]] || die "the encrypted node's values are not sealed"
[[ "$(first_byte encryption-cost-off:)" == '"{'* ]] || die "the other node's values are not plaintext"

echo "encryption-cost: $rounds rounds of $duration, $connections connections," \
  "mix $mix, $value_bytes-byte data; encrypted node :$port_on, plaintext node :$port_off"
on=()
off=()
cpu_on=()
cpu_off=()
for ((r = 1; r <= rounds; r++)); do
  order=(on off)
  ((r % 2 == 0)) && order=(off on)
  for name in "${order[@]}"; do
    read -r rps bad cpu < <(run "$name")
    ((bad == 0)) || echo "encryption-cost: round $r $name: $bad errors or unexpected statuses" >&2
    if [[ "$name" == on ]]; then
      on+=("$rps")
      cpu_on+=("$cpu")
    else
      off+=("$rps")
      cpu_off+=("$cpu")
    fi
    printf 'round %2d  %-12s %10.1f req/s  %6.2f us CPU/request\n' "$r" \
      "$([[ $name == on ]] && echo encrypted || echo plaintext)" "$rps" "$cpu"
  done
done

python3 - "${on[*]}" "${off[*]}" "${cpu_on[*]}" "${cpu_off[*]}" <<'EOF'
import statistics, sys
on, off, cpu_on, cpu_off = ([float(x) for x in a.split()] for a in sys.argv[1:5])
m_on, m_off = statistics.median(on), statistics.median(off)
pairs = [a / b for a, b in zip(on, off)]
print(f"median       encrypted  {m_on:10.1f} req/s   plaintext   {m_off:10.1f} req/s")
print(f"mean         encrypted  {statistics.mean(on):10.1f} req/s   "
      f"plaintext   {statistics.mean(off):10.1f} req/s")
print(f"ratio on/off {m_on / m_off:.3f} (of the medians); per round: " +
      " ".join(f"{p:.3f}" for p in pairs) + f"; median of rounds {statistics.median(pairs):.3f}")
print(f"cost         {100 * (1 - m_on / m_off):+.1f}% of throughput ")
c_on, c_off = statistics.median(cpu_on), statistics.median(cpu_off)
print(f"sessiond CPU encrypted  {c_on:.2f} us/request, plaintext   {c_off:.2f} us/request "
      f"(medians): encryption costs {c_on - c_off:+.2f} us = {100 * (c_on / c_off - 1):+.1f}% "
      "of sessiond's CPU")
EOF
