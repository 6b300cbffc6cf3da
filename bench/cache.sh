#!/usr/bin/env bash
# The cache (docs/cache.md) beside raw Redis and PostgreSQL: `sessiond-bench cache` ROUNDS times,
# each run on a freshly flushed Redis with its own sessiond (the bench starts the node itself),
# the hit-path phases (near cache on, off, raw Redis GET) in rotating order and the Zipf phases
# (sessiond from a cold cache, the raw SELECT) alternating. Prints every run, then the medians
# (with ranges) and the ratios asked for in docs/performance.md, "Cache".
#
#   ###########################################################################################
#   #  THIS SCRIPT RUNS `FLUSHALL` ON THE REDIS IT IS GIVEN, BEFORE EVERY RUN: EVERY KEY OF     #
#   #  EVERY DATABASE OF THAT REDIS IS DELETED. Give it a Redis of its own (scripts/services    #
#   #  start one), never one that holds data. It refuses to run unless BENCH_REDIS_URL is set,  #
#   #  or REDIS_URL is set and the first argument is --flush-redis.                             #
#   ###########################################################################################
#
#   eval "$(SESSIOND_SERVICES_DIR=/tmp/bench-svc scripts/services start)"
#   BENCH_REDIS_URL=$REDIS_URL bench/cache.sh
#   bench/cache.sh --flush-redis          # the same with the REDIS_URL of the environment
#
# BUILD_DIR (build), ROUNDS (3), CONNECTIONS (64), DURATION (10s: each hit-path window), WARMUP
# (2s), KEYS (10000), VALUE_BYTES (512), ZIPF_DURATION (15s), ZIPF_KEYS (100000), ZIPF_S (0.99),
# PG_CONNECTIONS (CONNECTIONS: the raw SELECT phase's connections),
# BUSY_MAX (20: before each run, wait until the machine's CPU was busy less than this % over one
# second, at most BUSY_WAIT_S = 600 s), OUT (a directory to keep every run's JSON in; default:
# none). PostgreSQL: POSTGRES_URL (the node's; the bench creates cache_bench.bench_items there,
# and the raw SELECT phase needs trust authentication, as scripts/services sets up).
set -euo pipefail

if [[ -n "${BENCH_REDIS_URL:-}" ]]; then
  REDIS_URL="$BENCH_REDIS_URL"
elif [[ "${1:-}" == --flush-redis && -n "${REDIS_URL:-}" ]]; then
  shift
else
  echo "cache: refusing to run: it FLUSHALLs its Redis before every run. Set BENCH_REDIS_URL to" \
    "a Redis of its own, or pass --flush-redis to flush \$REDIS_URL (${REDIS_URL:-not set})." >&2
  exit 2
fi
export REDIS_URL

me=cache
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[[ -n "${POSTGRES_URL:-}" ]] || die "POSTGRES_URL is not set (eval \"\$(scripts/services env)\")"
rounds="${ROUNDS:-3}"
warmup="${WARMUP:-2s}"
keys="${KEYS:-10000}"
zipf_duration="${ZIPF_DURATION:-15s}"
zipf_keys="${ZIPF_KEYS:-100000}"
zipf_s="${ZIPF_S:-0.99}"
pg_connections="${PG_CONNECTIONS:-$connections}"
busy_max="${BUSY_MAX:-20}"
busy_wait_s="${BUSY_WAIT_S:-600}"

# redis CMD...: one command on $REDIS_URL (AUTH from the URL); prints the reply.
redis() {
  python3 - "$REDIS_URL" "$@" <<'EOF'
import socket, sys, urllib.parse
u = urllib.parse.urlparse(sys.argv[1])
s = socket.create_connection((u.hostname or "127.0.0.1", u.port or 6379), timeout=60)
f = s.makefile("rb")
def call(*args):
    s.sendall(b"*%d\r\n" % len(args) + b"".join(
        b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode()) for a in args))
    line = f.readline()
    if line[:1] == b"$":
        n = int(line[1:])
        return f.read(n + 2)[:-2].decode() if n >= 0 else ""
    if line[:1] == b"-":
        sys.exit("redis: " + line[1:].decode().strip())
    return line[1:].decode().strip()
if u.password:
    call("AUTH", *([urllib.parse.unquote(u.username)] if u.username else []),
         urllib.parse.unquote(u.password))
print(call(*sys.argv[2:]))
EOF
}

# quiet: waits until the machine was less than $busy_max % busy over one second; prints that share.
quiet() {
  local waited=0 busy
  while true; do
    busy="$(python3 -c 'import time
def t():
    v = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return sum(v), v[3] + v[4]
a = t(); time.sleep(1); b = t()
print(round(100 * (1 - (b[1] - a[1]) / max(1, b[0] - a[0]))))')"
    if ((busy < busy_max || waited >= busy_wait_s)); then
      ((busy < busy_max)) || echo "cache: the machine stayed ${busy}% busy; running anyway" >&2
      echo "$busy"
      return
    fi
    echo "cache: the machine is ${busy}% busy (other work): waiting" >&2
    sleep 10
    waited=$((waited + 11))
  done
}

echo "cache: $rounds rounds; $connections connections; hit path $keys keys of $value_bytes bytes," \
  "$duration after $warmup warmup; Zipf($zipf_s) over $zipf_keys rows for $zipf_duration;" \
  "Redis $REDIS_URL; load $(cut -d' ' -f1-3 /proc/loadavg)"
hit=(near no-near redis)
for ((r = 1; r <= rounds; r++)); do
  k=$(((r - 1) % 3))
  phases="${hit[$k]},${hit[$(((k + 1) % 3))]},${hit[$(((k + 2) % 3))]}"
  if ((r % 2)); then phases+=",zipf,postgres"; else phases+=",postgres,zipf"; fi
  busy="$(quiet)"
  redis FLUSHALL >/dev/null
  redis CONFIG RESETSTAT >/dev/null
  out="$work/cache.$r.json"
  "$bench" cache --redis-url "$REDIS_URL" --postgres-url "$POSTGRES_URL" --sessiond "$sessiond" \
    --phases "$phases" --connections "$connections" --duration "$duration" --warmup "$warmup" \
    --keys "$keys" --value-bytes "$value_bytes" --zipf-duration "$zipf_duration" \
    --zipf-keys "$zipf_keys" --zipf-s "$zipf_s" --postgres-connections "$pg_connections" --json >"$out" 2>"$work/cache.$r.err" ||
    die "round $r failed: $(tail -n 20 "$work/cache.$r.err")"
  python3 - "$out" "$r" "$busy" "$phases" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
d["busy_before_pct"] = int(sys.argv[3])
json.dump(d, open(sys.argv[1], "w"), indent=1)
line = f"round {sys.argv[2]} ({sys.argv[3]}% busy before; {sys.argv[4]}):"
for name, p in d["phases"].items():
    m = p["machine"]
    line += (f"  {name} {p['throughput_rps']:.0f}/s p99 {p['latency_ms']['p99']:.2f} ms"
             f" (steal {m['steal_pct']:.0f}%, others {m['others_pct']:.0f}%)")
    if name == "zipf":
        line += f" hit {p['cache']['hit_ratio']:.3f} loads {p['cache']['loads_per_s']:.0f}/s"
print(line, flush=True)
EOF
done
redis FLUSHALL >/dev/null
echo "cache: done; load $(cut -d' ' -f1-3 /proc/loadavg)"
[[ -z "${OUT:-}" ]] || { mkdir -p "$OUT" && cp "$work"/cache.*.json "$OUT"/; }

python3 - "$work" "$rounds" <<'EOF'
import json, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
runs = [json.load(open(f"{work}/cache.{r}.json")) for r in range(1, rounds + 1)]
def cell(values, fmt="{:.0f}"):
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    med = statistics.median(values)
    return f"{fmt.format(med)} ({fmt.format(min(values))}–{fmt.format(max(values))})"
def get(d, *path):
    for k in path:
        if d is None or k not in d:
            return None
        d = d[k]
    return d
def row(label, phases, path, fmt):
    print(f"{label:<34} " + " ".join(
        f"{cell([get(d, 'phases', p, *path) for d in runs], fmt):<26}" for p in phases))
print(f"\nmedians of {rounds} rounds (range)\n")
hit = ("near", "no-near", "redis")
print(f"{'hit path':<34} {'sessiond, near cache on':<26} {'sessiond, near cache off':<26} "
      f"{'Redis GET':<26}")
row("requests/s", hit, ["throughput_rps"], "{:.0f}")
row("p50 ms", hit, ["latency_ms", "p50"], "{:.3f}")
row("p99 ms", hit, ["latency_ms", "p99"], "{:.3f}")
row("sessiond CPU us/request", hit, ["cpu_us_per_request", "sessiond"], "{:.1f}")
row("Redis CPU us/request", hit, ["cpu_us_per_request", "redis"], "{:.1f}")
row("bench CPU us/request", hit, ["cpu_us_per_request", "bench"], "{:.1f}")
row("near-cache share of hits", hit, ["cache", "near_share_of_hits"], "{:.4f}")
row("machine busy %", hit, ["machine", "busy_pct"], "{:.0f}")
row("  of it stolen (steal) %", hit, ["machine", "steal_pct"], "{:.1f}")
row("  of it other processes %", hit, ["machine", "others_pct"], "{:.1f}")
for p in ("near", "no-near"):
    ratios = [d["phases"][p]["throughput_rps"] / d["phases"]["redis"]["throughput_rps"]
              for d in runs]
    print(f"{'throughput / Redis GET, ' + p:<34} {cell(ratios, '{:.2f}')}")
z = ("zipf", "postgres")
print(f"\n{'Zipf':<34} {'sessiond GET (cache)':<26} {'SELECT (no cache)':<26}")
row("requests/s", z, ["throughput_rps"], "{:.0f}")
row("p50 ms", z, ["latency_ms", "p50"], "{:.3f}")
row("p99 ms", z, ["latency_ms", "p99"], "{:.3f}")
row("hit ratio (whole window)", z, ["cache", "hit_ratio"], "{:.4f}")
row("best hit ratio (each key once)", z, ["best_hit_ratio"], "{:.4f}")
row("hit ratio, last 5 s", z, ["last_5s", "hit_ratio"], "{:.4f}")
row("PostgreSQL queries/s (loads/s)", z, ["cache", "loads_per_s"], "{:.0f}")
row("PostgreSQL queries/s, last 5 s", z, ["last_5s", "loads_per_s"], "{:.0f}")
row("distinct keys requested", z, ["distinct_keys"], "{:.0f}")
row("PostgreSQL CPU us/request", z, ["cpu_us_per_request", "postgres"], "{:.1f}")
row("PostgreSQL CPU, cores", z, ["cpu_cores", "postgres"], "{:.2f}")
row("sessiond CPU us/request", z, ["cpu_us_per_request", "sessiond"], "{:.1f}")
row("Redis CPU us/request", z, ["cpu_us_per_request", "redis"], "{:.1f}")
row("machine busy %", z, ["machine", "busy_pct"], "{:.0f}")
row("  of it stolen (steal) %", z, ["machine", "steal_pct"], "{:.1f}")
row("  of it other processes %", z, ["machine", "others_pct"], "{:.1f}")
saved = [d["phases"]["postgres"]["throughput_rps"] / d["phases"]["zipf"]["cache"]["loads_per_s"]
         for d in runs]
print(f"{'PostgreSQL queries/s, no cache / cache':<34} {cell(saved, '{:.1f}')}x")
bad = [(r + 1, n, p["status"], p["errors"]) for r, d in enumerate(runs)
       for n, p in d["phases"].items() if p["ok"] != p["requests"] or any(p["errors"].values())]
for r, n, status, errors in bad:
    print(f"cache: round {r} {n}: status {status}, errors {errors}", file=sys.stderr)
EOF
