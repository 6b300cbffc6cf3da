# Shared by the A/B cost benches (bench/metrics-cost.sh, bench/encryption-cost.sh); sourced after
# bench/lib.sh, not run. Two sessiond nodes, "on" and "off", on the same Redis and PostgreSQL
# that differ in one setting, loaded by sessiond-bench alternately in interleaved rounds (A B,
# B A, A B, …) so that drift on the machine falls on both alike; each round's throughput and the
# CPU time the node spent per request (utime + stime from /proc), then the medians and ratios.
# Provides:
#   ab_start_node NAME TAG VAR=VALUE...  a node on a free port, Redis key prefix TAG-NAME:,
#                        PostgreSQL schema TAG_NAME, node id TAG-NAME, with the extra settings;
#                        sets port_NAME and pid_NAME
#   ab_warm              prefills and warms each node once (the rounds then run without)
#   ab_compare LABEL_ON LABEL_OFF [TARGET]  ROUNDS (6) rounds, printed, then the summary; TARGET
#                        is printed after the throughput cost ("target: within 3%")
# A script may define ab_before_round NAME and ab_after_round NAME (e.g. to scrape the node).
# shellcheck shell=bash
# shellcheck disable=SC2154 # me, work, sessiond, bench, duration, tick_us: set by bench/lib.sh

rounds="${ROUNDS:-6}"
common=(--connections "$connections" --mix "$mix" --value-bytes "$value_bytes" --sessions "$sessions")
# shellcheck disable=SC2034 # read through ${!pid_var} and ${!port_var}
port_on="" port_off="" pid_on="" pid_off=""

ab_start_node() {
  local name="$1" tag="$2"
  shift 2
  start "$name" env SESSIOND_REDIS_URL="$REDIS_URL" \
    SESSIOND_POSTGRES_URL="${POSTGRES_URL:-postgresql://postgres@127.0.0.1:5432/sessiond}" \
    SESSIOND_POSTGRES_SCHEMA="${tag//-/_}_$name" \
    SESSIOND_REDIS_KEY_PREFIX="$tag-$name:" \
    SESSIOND_NODE_ID="$tag-$name" \
    SESSIOND_HTTP_LISTEN=127.0.0.1:0 \
    "$@" "$sessiond"
}

ab_warm() {
  local name port_var
  for name in on off; do
    port_var="port_$name"
    "$bench" --url "http://127.0.0.1:${!port_var}" "${common[@]}" --duration 3s --warmup 0s \
      --json >/dev/null || die "warm-up run against $name failed"
  done
}

# ab_round NAME: one bench round against node NAME; prints its throughput (req/s), the count of
# errors and unexpected statuses, and the node's CPU microseconds per request.
ab_round() {
  local name="$1" port_var="port_$1" pid_var="pid_$1" t0 t1
  ! declare -F ab_before_round >/dev/null || ab_before_round "$name"
  t0="$(cpu_ticks "${!pid_var}")"
  "$bench" --url "http://127.0.0.1:${!port_var}" "${common[@]}" --duration "$duration" \
    --warmup 0s --no-prefill --json >"$work/round.json"
  t1="$(cpu_ticks "${!pid_var}")"
  ! declare -F ab_after_round >/dev/null || ab_after_round "$name"
  python3 -c 'import json,sys
p = json.load(open(sys.argv[1]))["phases"]["sessiond"]
bad = p["errors"]["total"] + sum(n for s, n in p["status"].items() if s not in ("200", "201"))
cpu_us = (int(sys.argv[3]) - int(sys.argv[2])) * int(sys.argv[4]) / max(p["requests"], 1)
print("%.1f %d %.2f" % (p["throughput_rps"], bad, cpu_us))' "$work/round.json" "$t0" "$t1" "$tick_us"
}

ab_compare() {
  local label_on="$1" label_off="$2" target="${3:-}" r name rps bad cpu
  local -a on=() off=() cpu_on=() cpu_off=() order
  echo "$me: $rounds rounds of $duration, $connections connections, mix $mix," \
    "$value_bytes-byte data; $label_on node :$port_on, $label_off node :$port_off"
  for ((r = 1; r <= rounds; r++)); do
    order=(on off)
    ((r % 2 == 0)) && order=(off on)
    for name in "${order[@]}"; do
      read -r rps bad cpu < <(ab_round "$name")
      ((bad == 0)) || echo "$me: round $r $name: $bad errors or unexpected statuses" >&2
      if [[ "$name" == on ]]; then
        on+=("$rps")
        cpu_on+=("$cpu")
      else
        off+=("$rps")
        cpu_off+=("$cpu")
      fi
      printf 'round %2d  %-12s %10.1f req/s  %6.2f us CPU/request\n' "$r" \
        "$([[ $name == on ]] && echo "$label_on" || echo "$label_off")" "$rps" "$cpu"
    done
  done
  python3 - "${on[*]}" "${off[*]}" "${cpu_on[*]}" "${cpu_off[*]}" "$label_on" "$label_off" \
    "$target" <<'PY'
import statistics, sys
on, off, cpu_on, cpu_off = ([float(x) for x in a.split()] for a in sys.argv[1:5])
a, b, target = sys.argv[5], sys.argv[6], sys.argv[7]
w = max(len(a), len(b))
m_on, m_off = statistics.median(on), statistics.median(off)
pairs = [x / y for x, y in zip(on, off)]
print(f"median       {a:<{w}} {m_on:10.1f} req/s   {b:<{w}} {m_off:10.1f} req/s")
print(f"mean         {a:<{w}} {statistics.mean(on):10.1f} req/s   "
      f"{b:<{w}} {statistics.mean(off):10.1f} req/s")
print(f"ratio on/off {m_on / m_off:.3f} (of the medians); per round: " +
      " ".join(f"{p:.3f}" for p in pairs) + f"; median of rounds {statistics.median(pairs):.3f}")
print(f"cost         {100 * (1 - m_on / m_off):+.1f}% of throughput" +
      (f" ({target})" if target else ""))
c_on, c_off = statistics.median(cpu_on), statistics.median(cpu_off)
print(f"sessiond CPU {a:<{w}} {c_on:.2f} us/request, {b:<{w}} {c_off:.2f} us/request "
      f"(medians): {a} costs {c_on - c_off:+.2f} us = {100 * (c_on / c_off - 1):+.1f}% "
      "of sessiond's CPU")
PY
}
