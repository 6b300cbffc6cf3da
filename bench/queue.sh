#!/usr/bin/env bash
# sessiond's job queue beside BullMQ 5, on the same Redis in the same run: no-op jobs with
# 200-byte payloads through sessiond's built-in pool (pool), through the lease API with the
# bench's 8 worker connections (lease), and through BullMQ with one Worker of concurrency 100
# (bullmq). Each round runs the three in rotating order, each on a freshly flushed Redis; then
# one-by-one enqueues, then Redis memory per 100,000 waiting jobs. Prints every run, then a table
# of medians (with ranges) and the ratio sessiond / BullMQ of the processing rates. During the
# BullMQ runs sessiond is stopped (SIGSTOP), so that its idle timers take nothing from them.
#
#   ###########################################################################################
#   #  THIS SCRIPT RUNS `FLUSHALL` ON THE REDIS IT IS GIVEN, BEFORE EVERY RUN: EVERY KEY OF     #
#   #  EVERY DATABASE OF THAT REDIS IS DELETED. Give it a Redis of its own (scripts/services    #
#   #  start one), never one that holds data. It refuses to run unless BENCH_REDIS_URL is set,  #
#   #  or REDIS_URL is set and the first argument is --flush-redis.                             #
#   ###########################################################################################
#
#   eval "$(SESSIOND_SERVICES_DIR=/tmp/bench-svc scripts/services start)"
#   BENCH_REDIS_URL=$REDIS_URL BUILD_DIR=build bench/queue.sh
#   bench/queue.sh --flush-redis          # the same with the REDIS_URL of the environment
#
# BUILD_DIR (build), ROUNDS (3), JOBS (100000), PAYLOAD_BYTES (200), PRODUCERS (4), BATCH (100),
# WORKERS (8), CONCURRENCY (100: the pool's and BullMQ's), PACED_RATE (2000), PACED_SECONDS (5),
# SINGLE_JOBS (JOBS: jobs enqueued one per request), MEMORY_JOBS (100000), WARMUP_JOBS (20000:
# run through sessiond once before the rounds, and by the BullMQ driver before each of its runs,
# not recorded), BUSY_MAX (20: before each run, wait until the machine's CPU was busy less than
# this % over one second, at most BUSY_WAIT_S = 600 s), OUT (a directory to keep every run's
# JSON in; default: none). Each run also records what other processes spent meanwhile.
# PostgreSQL: POSTGRES_URL (sessiond needs one; schema queue_bench). npm installs BullMQ from
# bench/queue-peer/package-lock.json into bench/queue-peer/node_modules (git-ignored) once.
set -euo pipefail

if [[ -n "${BENCH_REDIS_URL:-}" ]]; then
  REDIS_URL="$BENCH_REDIS_URL"
elif [[ "${1:-}" == --flush-redis && -n "${REDIS_URL:-}" ]]; then
  shift
else
  echo "queue: refusing to run: it FLUSHALLs its Redis before every run. Set BENCH_REDIS_URL to" \
    "a Redis of its own, or pass --flush-redis to flush \$REDIS_URL (${REDIS_URL:-not set})." >&2
  exit 2
fi
export REDIS_URL

me=queue
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
rounds="${ROUNDS:-3}"
jobs="${JOBS:-100000}"
payload_bytes="${PAYLOAD_BYTES:-200}"
producers="${PRODUCERS:-4}"
batch="${BATCH:-100}"
workers="${WORKERS:-8}"
concurrency="${CONCURRENCY:-100}"
paced_rate="${PACED_RATE:-2000}"
paced_seconds="${PACED_SECONDS:-5}"
single_jobs="${SINGLE_JOBS:-$jobs}"
memory_jobs="${MEMORY_JOBS:-100000}"
warmup_jobs="${WARMUP_JOBS:-20000}"
busy_max="${BUSY_MAX:-20}"
busy_wait_s="${BUSY_WAIT_S:-600}"
peer="$root/bench/queue-peer"
command -v node >/dev/null || die "node (18 or later) is needed for the BullMQ side"
if [[ ! -d "$peer/node_modules/bullmq" ]]; then
  echo "queue: installing BullMQ from bench/queue-peer/package-lock.json (npm ci)" >&2
  (cd "$peer" && npm ci --no-audit --no-fund >&2) || die "npm ci in bench/queue-peer failed"
fi

# redis CMD...: one command on $REDIS_URL (AUTH and SELECT from the URL); prints the reply.
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

# quiet: waits until the machine was less than $busy_max % busy over one second (nothing of ours
# runs between runs); prints that share.
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
      ((busy < busy_max)) || echo "queue: the machine stayed ${busy}% busy; running anyway" >&2
      echo "$busy"
      return
    fi
    echo "queue: the machine is ${busy}% busy (other work): waiting" >&2
    sleep 10
    waited=$((waited + 11))
  done
}

# ticks: CPU ticks spent so far by the whole machine (busy and, of it, stolen by the hypervisor,
# from /proc/stat), Redis, sessiond and this shell's finished children (the bench or node run in
# between), then the time in ns. Their difference over a run is what other processes spent.
ticks() {
  local busy rest c0 c1
  busy="$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $9 }' /proc/stat)"
  rest="$(awk '{ sub(/.*\) /, ""); print $14 + $15 }' "/proc/$$/stat")"
  c0=0
  [[ -n "$redis_pid" && -r "/proc/$redis_pid/stat" ]] && c0="$(cpu_ticks "$redis_pid")"
  c1="$(cpu_ticks "$pid_sessiond")"
  echo "$busy $c0 $c1 $rest $(date +%s%N)"
}

# fresh: an empty Redis with zeroed statistics.
fresh() {
  redis FLUSHALL >/dev/null
  redis CONFIG RESETSTAT >/dev/null
}

cat >"$work/sessiond.toml" <<EOF
# bench/queue.sh: the pool runs queue "bench" (noop handler); queue "bench-lease" has no handler,
# the bench's workers lease it. max_length is raised so that --jobs jobs fit when paused.
[queues.bench]
concurrency = $concurrency
keep_completed = 1000
max_length = 10000000
[queues.bench.handlers.noop]
kind = "noop"

[queues.bench-lease]
keep_completed = 1000
max_length = 10000000
EOF

# shellcheck disable=SC2034 # set by start
port_sessiond="" pid_sessiond=""
redis_pid="$(redis INFO server | awk -F: '/^process_id:/ { print $2 }' | tr -d '\r')"
start sessiond env SESSIOND_REDIS_URL="$REDIS_URL" \
  SESSIOND_POSTGRES_URL="${POSTGRES_URL:-postgresql://postgres@127.0.0.1:5432/sessiond}" \
  SESSIOND_POSTGRES_SCHEMA=queue_bench SESSIOND_REDIS_KEY_PREFIX=queue-bench: \
  SESSIOND_NODE_ID=queue-bench SESSIOND_SYNC_INTERVAL_MS=86400000 \
  SESSIOND_HTTP_LISTEN=127.0.0.1:0 "$sessiond" --config "$work/sessiond.toml"
url="http://127.0.0.1:$port_sessiond"
# lib.sh's cleanup sends SIGTERM, which a stopped sessiond would never act on.
trap 'kill -CONT "$pid_sessiond" 2>/dev/null; cleanup' EXIT
common=(--url "$url" --redis-url "$REDIS_URL" --key-prefix queue-bench: --pid "$pid_sessiond"
  --jobs "$jobs" --payload-bytes "$payload_bytes" --producers "$producers" --batch "$batch"
  --paced-rate "$paced_rate" --paced-seconds "$paced_seconds" --json)
peer_common=(--redis-url "$REDIS_URL" --queue bench --jobs "$jobs" --payload-bytes "$payload_bytes"
  --producers "$producers" --batch "$batch" --concurrency "$concurrency" --keep-completed 1000
  --paced-rate "$paced_rate" --paced-seconds "$paced_seconds" --warmup-jobs "$warmup_jobs")

# Warm-up, not recorded: sessiond's first jobs (pool and lease) on a flushed Redis; the BullMQ
# driver warms up itself in every run (--warmup-jobs: each run is a new node process).
fresh
for mode in pool lease; do
  queue_name="bench"
  [[ "$mode" == lease ]] && queue_name="bench-lease"
  "$bench" queue "${common[@]}" --queue "$queue_name" --mode "$mode" --jobs "$warmup_jobs" \
    --paced-seconds 1 >/dev/null || die "the warm-up run ($mode) failed"
done

# run SYSTEM ROUND: one run on a flushed Redis; its JSON goes to $work/SYSTEM.ROUND.json.
run() {
  local system="$1" round="$2" busy t0 t1 rc out="$work/$1.$2.json"
  busy="$(quiet)"
  fresh
  t0="$(ticks)"
  # BullMQ runs with sessiond stopped (SIGSTOP): idle, the node still spends ~9% of a core and a
  # little of Redis' time on its timers and polls, which would be charged to BullMQ.
  [[ "$system" != bullmq* ]] || kill -STOP "$pid_sessiond"
  rc=0
  case "$system" in
    pool) "$bench" queue "${common[@]}" --queue bench --mode pool >"$out" ;;
    lease) "$bench" queue "${common[@]}" --queue bench-lease --mode lease --workers "$workers" >"$out" ;;
    bullmq) node "$peer/bullmq-bench.mjs" "${peer_common[@]}" >"$out" ;;
    pool-single) "$bench" queue "${common[@]}" --queue bench --batch 1 --jobs "$single_jobs" \
      --phases enqueue,drain >"$out" ;;
    bullmq-single) node "$peer/bullmq-bench.mjs" "${peer_common[@]}" --batch 1 --jobs "$single_jobs" \
      --phases enqueue >"$out" ;;
    pool-memory) "$bench" queue "${common[@]}" --queue bench --jobs "$memory_jobs" \
      --phases memory >"$out" ;;
    bullmq-memory) node "$peer/bullmq-bench.mjs" "${peer_common[@]}" --jobs "$memory_jobs" \
      --phases memory >"$out" ;;
  esac || rc=$?
  kill -CONT "$pid_sessiond"
  ((rc == 0)) || die "$system (round $round) failed; its output: $(head -c 2000 "$out")"
  t1="$(ticks)"
  python3 - "$out" "$system" "$round" "$busy" "$t0" "$t1" "$tick_us" "$(nproc)" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
d["busy_before_pct"] = int(sys.argv[4])
d["load_before"] = open("/proc/loadavg").read().split()[0]
t0, t1 = ([int(x) for x in t.split()] for t in sys.argv[5:7])
tick_s, cpus = int(sys.argv[7]) / 1e6, int(sys.argv[8])
busy, steal, redis, sessiond, client = ((t1[i] - t0[i]) * tick_s for i in range(5))
wall = (t1[5] - t0[5]) / 1e9
other = max(0.0, busy - steal - redis - sessiond - client)
d["machine"] = {"wall_s": wall, "cpus": cpus, "busy_cpu_s": busy, "steal_cpu_s": steal,
                "redis_cpu_s": redis, "sessiond_cpu_s": sessiond, "client_cpu_s": client,
                "other_cpu_s": other, "other_pct": 100 * other / (wall * cpus),
                "steal_pct": 100 * steal / (wall * cpus)}
json.dump(d, open(sys.argv[1], "w"), indent=1)
line = (f"round {sys.argv[3]}  {sys.argv[2]:<14} (machine {sys.argv[4]:>2}% busy before, "
        f"others {d['machine']['other_pct']:.0f}%, steal {d['machine']['steal_pct']:.0f}% during)")
if "memory" in d:
    m = d["memory"]
    line += f"  {m['mib_per_100k_jobs']:.2f} MiB per 100k waiting jobs"
for name, p in d["phases"].items():
    line += f"  {name} {p['jobs_per_s']:.0f}/s"
    if p.get("latency_ms"):
        line += f" (p50 {p['latency_ms']['p50']:.1f} p99 {p['latency_ms']['p99']:.1f} ms)"
print(line, flush=True)
EOF
}

echo "queue: $rounds rounds, $jobs jobs of $payload_bytes bytes, $producers producers, batch" \
  "$batch, pool/BullMQ concurrency $concurrency, $workers lease workers; sessiond $url" \
  "(pid $pid_sessiond), Redis $REDIS_URL; load $(cut -d' ' -f1-3 /proc/loadavg)"
systems=(pool lease bullmq)
for ((r = 1; r <= rounds; r++)); do
  for ((k = 0; k < 3; k++)); do
    run "${systems[$(((k + r - 1) % 3))]}" "$r"
  done
  run pool-single "$r"
  run bullmq-single "$r"
  run pool-memory "$r"
  run bullmq-memory "$r"
done
fresh
echo "queue: done; load $(cut -d' ' -f1-3 /proc/loadavg)"
[[ -z "${OUT:-}" ]] || { mkdir -p "$OUT" && cp "$work"/*.json "$OUT"/; }

python3 - "$work" "$rounds" <<'EOF'
import json, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
def runs(system):
    return [json.load(open(f"{work}/{system}.{r}.json")) for r in range(1, rounds + 1)]
def cell(values, fmt="{:.0f}"):
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    med = statistics.median(values)
    return f"{fmt.format(med)} ({fmt.format(min(values))}–{fmt.format(max(values))})"
def phase(d, name, key, sub=None):
    p = d["phases"].get(name)
    if p is None:
        return None
    v = p[key]
    return v[sub] if sub and v is not None else v
def life(d, key):  # enqueue + drain: the whole life of the same jobs
    e, dr = d["phases"].get("enqueue"), d["phases"].get("drain")
    vals = [x["cost"].get(key) for x in (e, dr) if x]
    return sum(vals) if len(vals) == 2 and None not in vals else None
data = {s: runs(s) for s in ("pool", "lease", "bullmq", "pool-single", "bullmq-single",
                             "pool-memory", "bullmq-memory")}
rows = [
    ("enqueue jobs/s (batches)", lambda d: phase(d, "enqueue", "jobs_per_s"), "{:.0f}"),
    ("drain jobs/s (from a full queue)", lambda d: phase(d, "drain", "jobs_per_s"), "{:.0f}"),
    ("concurrent jobs/s (producers + workers)", lambda d: phase(d, "concurrent", "jobs_per_s"), "{:.0f}"),
    ("concurrent latency p50 ms", lambda d: phase(d, "concurrent", "latency_ms", "p50"), "{:.1f}"),
    ("concurrent latency p99 ms", lambda d: phase(d, "concurrent", "latency_ms", "p99"), "{:.1f}"),
    ("paced jobs/s achieved", lambda d: phase(d, "paced", "jobs_per_s"), "{:.0f}"),
    ("paced latency p50 ms", lambda d: phase(d, "paced", "latency_ms", "p50"), "{:.2f}"),
    ("paced latency p99 ms", lambda d: phase(d, "paced", "latency_ms", "p99"), "{:.2f}"),
    ("Redis CPU us/job, INFO cpu (enqueue+drain)", lambda d: life(d, "redis_cpu_us_per_job"), "{:.1f}"),
    ("Redis us/job, commandstats sum (enqueue+drain)", lambda d: life(d, "cmdstat_us_per_job"), "{:.1f}"),
    ("Redis us/job, commandstats scripts only", lambda d: life(d, "cmdstat_script_us_per_job"), "{:.1f}"),
    ("sessiond / node CPU us/job (enqueue+drain)",
     lambda d: life(d, "sessiond_cpu_us_per_job") if "sessiond_cpu_us_per_job" in d["phases"].get("enqueue", {}).get("cost", {}) else life(d, "node_cpu_us_per_job"), "{:.1f}"),
    ("bench CPU us/job (enqueue+drain)", lambda d: life(d, "bench_cpu_us_per_job"), "{:.1f}"),
]
print(f"\nmedians of {rounds} rounds (range)")
print(f"{'':<48} {'sessiond pool':<24} {'sessiond lease':<24} {'BullMQ':<24}")
for label, f, fmt in rows:
    print(f"{label:<48} " + " ".join(f"{cell([f(d) for d in data[s]], fmt):<24}"
                                    for s in ("pool", "lease", "bullmq")))
single = lambda d: phase(d, "enqueue", "jobs_per_s")
print(f"{'enqueue jobs/s, one job per request':<48} {cell([single(d) for d in data['pool-single']]):<24} "
      f"{'(same API)':<24} {cell([single(d) for d in data['bullmq-single']]):<24}")
other = lambda d: d["machine"]["other_pct"]
print(f"{'other processes during the run, % of the machine':<48} "
      + " ".join(f"{cell([other(d) for d in data[s]]):<24}" for s in ("pool", "lease", "bullmq")))
mem = lambda d: d["memory"]["mib_per_100k_jobs"]
print(f"{'Redis MiB per 100k waiting jobs':<48} {cell([mem(d) for d in data['pool-memory']], '{:.2f}'):<24} "
      f"{'(same store)':<24} {cell([mem(d) for d in data['bullmq-memory']], '{:.2f}'):<24}")
print("\nratio sessiond / BullMQ of the processing rate (median of the per-round ratios, range)")
for mode in ("pool", "lease"):
    for name in ("drain", "concurrent"):
        ratios = [phase(a, name, "jobs_per_s") / phase(b, name, "jobs_per_s")
                  for a, b in zip(data[mode], data["bullmq"])]
        print(f"  {mode:<6} {name:<11} {cell(ratios, '{:.2f}')}x   (target: 3x; "
              f"{'met' if statistics.median(ratios) >= 3 else 'NOT met'})")
bad = [(s, r + 1, n, p) for s in data for r, d in enumerate(data[s]) for n, p in d["phases"].items()
       if p.get("unexpected_status") or p.get("lost_leases") or p.get("failed") or
       "not " in p.get("note", "")]
for s, r, n, p in bad:
    print(f"queue: {s} round {r} {n}: unexpected {p.get('unexpected_status')}, lost "
          f"{p.get('lost_leases')}, failed {p.get('failed')}, {p.get('note', '')}", file=sys.stderr)
EOF
