#!/usr/bin/env bash
# How close sessiond comes to the most this machine allows: sessiond and two `sessiond-bench
# floor` servers on the same Redis, loaded in turn with the issue's workload (80/20 GET/PUT,
# 512-byte data, 64 connections), each run followed by the raw Redis baseline of the same run:
#
#   sessiond   the node (PostgreSQL configured, no sync run during the rounds)
#   redis      floor --redis: sessiond's HTTP server and Redis client sending only the HMGET of
#              a GET and the node's write script of a PUT, nothing else
#   fixed      floor: sessiond's HTTP server answering a fixed body, no Redis
#
# Prints each run's throughput, the raw Redis baseline and their ratio, and the CPU each server
# process spent per request (utime + stime from /proc), then the medians. Rounds rotate the
# order so that drift on the machine falls on all three alike.
#
#   eval "$(scripts/services env)"     # REDIS_URL (and POSTGRES_URL) of running services
#   bench/ceiling.sh                   # defaults below; override with the variables
#
# BUILD_DIR (build), ROUNDS (3), DURATION (10s), CONNECTIONS (64), MIX (get=80,put=20),
# VALUE_BYTES (512), SESSIONS (10000). The node leaves its sessions under the Redis key prefix
# ceiling: and in the PostgreSQL schema ceiling; the raw baseline uses Redis db 5.
set -euo pipefail

me=ceiling
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
rounds="${ROUNDS:-3}"
baseline_url="${REDIS_URL%/*}/5"

# shellcheck disable=SC2034 # read through ${!pid_var} and ${!port_var}
port_sessiond="" port_redis="" port_fixed="" pid_sessiond="" pid_redis="" pid_fixed=""
start sessiond env SESSIOND_REDIS_URL="$REDIS_URL" \
  SESSIOND_POSTGRES_URL="${POSTGRES_URL:-postgresql://postgres@127.0.0.1:5432/sessiond}" \
  SESSIOND_POSTGRES_SCHEMA=ceiling SESSIOND_REDIS_KEY_PREFIX=ceiling: SESSIOND_NODE_ID=ceiling \
  SESSIOND_SYNC_INTERVAL_MS=86400000 SESSIOND_HTTP_LISTEN=127.0.0.1:0 "$sessiond"
start redis "$bench" floor --listen 127.0.0.1:0 --redis "$REDIS_URL"
start fixed "$bench" floor --listen 127.0.0.1:0

common=(--connections "$connections" --mix "$mix" --value-bytes "$value_bytes"
  --sessions "$sessions" --baseline redis --redis-url "$baseline_url")
# Prefill and warm each server (and the baseline's keys) once; the rounds then run without
# prefill or warm-up, so the CPU a server spends during a round is that round's requests'.
for name in sessiond redis fixed; do
  port_var="port_$name"
  "$bench" --url "http://127.0.0.1:${!port_var}" "${common[@]}" --duration 3s --warmup 0s \
    --json >/dev/null || die "warm-up run against $name failed"
done

# run NAME: one run against NAME and its baseline; prints req/s, baseline req/s, ratio, errors
# and unexpected statuses, and the server's CPU microseconds per request.
run() {
  local port_var="port_$1" pid_var="pid_$1" t0 t1
  t0="$(cpu_ticks "${!pid_var}")"
  "$bench" --url "http://127.0.0.1:${!port_var}" "${common[@]}" --duration "$duration" \
    --warmup 0s --no-prefill --json >"$work/run.json"
  t1="$(cpu_ticks "${!pid_var}")"
  python3 -c 'import json,sys
p = json.load(open(sys.argv[1]))["phases"]
s, r = p["sessiond"], p["redis"]
bad = s["errors"]["total"] + sum(n for c, n in s["status"].items() if c not in ("200", "201"))
cpu_us = (int(sys.argv[3]) - int(sys.argv[2])) * int(sys.argv[4]) / max(s["requests"], 1)
print("%.1f %.1f %.3f %d %.2f" % (s["throughput_rps"], r["throughput_rps"],
      s["throughput_rps"] / r["throughput_rps"], bad, cpu_us))' "$work/run.json" "$t0" "$t1" "$tick_us"
}

echo "ceiling: $rounds rounds of $duration, $connections connections, mix $mix," \
  "$value_bytes-byte data; sessiond :$port_sessiond, floor --redis :$port_redis," \
  "floor (fixed) :$port_fixed"
names=(sessiond redis fixed)
: >"$work/results"
for ((r = 1; r <= rounds; r++)); do
  for ((k = 0; k < 3; k++)); do
    name="${names[$(((k + r - 1) % 3))]}"
    read -r rps base ratio bad cpu < <(run "$name")
    ((bad == 0)) || echo "ceiling: round $r $name: $bad errors or unexpected statuses" >&2
    echo "$name $rps $base $ratio $cpu" >>"$work/results"
    printf 'round %d  %-9s %9.1f req/s  raw Redis %9.1f req/s  ratio %.3f  %6.2f us CPU/request\n' \
      "$r" "$name" "$rps" "$base" "$ratio" "$cpu"
  done
done

python3 - "$work/results" <<'EOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, rps, base, ratio, cpu = line.split()
    rows.setdefault(name, []).append((float(rps), float(ratio), float(cpu)))
label = {"sessiond": "sessiond", "redis": "floor --redis", "fixed": "floor (fixed)"}
for name in ("sessiond", "redis", "fixed"):
    r = rows[name]
    print(f"median  {label[name]:<14} {statistics.median(x[0] for x in r):9.1f} req/s  "
          f"ratio {statistics.median(x[1] for x in r):.3f} (runs: "
          + " ".join(f"{x[1]:.3f}" for x in r)
          + f")  {statistics.median(x[2] for x in r):6.2f} us CPU/request")
EOF
