#!/usr/bin/env bash
# The soak: SOAK_SECONDS (600) of paced, mixed session load on one sessiond node while its Redis
# and its PostgreSQL are each restarted at random moments (killed or stopped, then started
# again) and the network to each is cut and restored through a TCP proxy (sessiond-tcp-proxy,
# the integration tests' tests/integration/tcp_proxy.hpp). Self-contained: it starts its own
# Redis (persisting: AOF everysec) and PostgreSQL in a fresh temp dir with scripts/services,
# a proxy in front of each, and the node behind them; everything is stopped at the end.
#
#   bench/soak.sh                       # 10 minutes
#   SOAK_SECONDS=120 bench/soak.sh      # a short run
#
# At the end, after the proxies are up again, the node is back on Redis and POST /v1/admin/sync
# has drained the backlog, it asserts (exit 1 when one fails, with the summary):
#   1. every acknowledged write is in PostgreSQL: for every session id, PostgreSQL's version is at
#      least the highest version the node acknowledged for it (sessiond-bench --acked-file: the
#      ETag of each 200/201 answer to a PUT or PATCH, the prefill's included), and the session
#      the API serves (Redis) has exactly PostgreSQL's version and data;
#   2. sessiond's RSS is flat: the median VmRSS of the last RSS_WINDOW_S seconds is within
#      RSS_TOLERANCE_PCT (10) % of the median of the RSS_WINDOW_S seconds after the warm-up,
#      which ends when each of the six kinds of fault has happened once (the first Redis
#      outage steps RSS up once, by about 2 MiB);
#   3. no request hung past its timeout: no request of the bench timed out (its --timeout is
#      well above the node's) and the longest send -> response time is at most the sum of the
#      node's configured timeouts on the worst path (Redis connect + command, PostgreSQL
#      connect + statement);
#   and that the node is still running.
# docs/performance.md ("Soak") says what is guaranteed and why Redis must persist for 1.
#
# Variables: BUILD_DIR (build), SOAK_SECONDS (600), RATE (800 requests/s, open loop),
# CONNECTIONS (16), SESSIONS (2000), MIX (get=60,put=20,patch=20), VALUE_BYTES (512),
# SOAK_SEED (random; printed, so a run can be repeated), WARMUP_S (60: no fault before),
# QUIET_END_S (45: no fault starts in the last QUIET_END_S seconds), GAP_MIN_S / GAP_MAX_S (15 /
# 45: pause between two faults), RSS_WINDOW_S (60), RSS_TOLERANCE_PCT (10), SOAK_OUT (a directory
# to keep the run's files in; by default they are kept only when the soak fails).
set -euo pipefail

me=soak
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
[[ "$build" = /* ]] || build="$root/$build"
proxy_bin="$build/bench/sessiond-tcp-proxy"
[[ -x "$proxy_bin" ]] || { echo "$me: build sessiond-tcp-proxy in $build first" >&2; exit 1; }
command -v psql >/dev/null || { echo "$me: psql is needed" >&2; exit 1; }

soak_s="${SOAK_SECONDS:-600}"
rate="${RATE:-800}"
seed="${SOAK_SEED:-$((RANDOM * 32768 + RANDOM))}"
warmup_s="${WARMUP_S:-60}"
quiet_end_s="${QUIET_END_S:-45}"
gap_min_s="${GAP_MIN_S:-15}"
gap_max_s="${GAP_MAX_S:-45}"
rss_window_s="${RSS_WINDOW_S:-60}"
rss_tolerance="${RSS_TOLERANCE_PCT:-10}"
((soak_s >= warmup_s + quiet_end_s + 10)) ||
  { echo "$me: SOAK_SECONDS=$soak_s leaves no time for faults (WARMUP_S + QUIET_END_S + 10)" >&2; exit 2; }

# --- services of our own: Redis persisting, PostgreSQL with fsync (no SESSIOND_SERVICES_FAST) ---
svc="$(mktemp -d /tmp/sessiond-soak-svc.XXXXXX)"
services() { SESSIOND_SERVICES_DIR="$svc" "$root/scripts/services" "$@"; }
# shellcheck disable=SC2317 # invoked through the EXIT traps
stop_services() {
  services stop >/dev/null 2>&1 || true
  rm -rf "$svc"
}
trap stop_services EXIT
services start --persist >"$svc.env" 2>"$svc.start.log" ||
  { cat "$svc.start.log" >&2; echo "$me: services did not start" >&2; exit 1; }
# shellcheck disable=SC1090
source "$svc.env" # REDIS_URL, POSTGRES_URL, REDIS_PORT, POSTGRES_PORT
rm -f "$svc.env" "$svc.start.log"
redis_port="${REDIS_PORT:?}"
pg_port="${POSTGRES_PORT:?}"

# The soak's workload, unless set (bench/lib.sh reads these).
: "${CONNECTIONS:=16}" "${MIX:=get=60,put=20,patch=20}" "${SESSIONS:=2000}"
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
RANDOM="$seed"
failed=0
# shellcheck disable=SC2317 # invoked through the EXIT trap
soak_cleanup() {
  local rc=$?
  [[ -z "${bench_pid:-}" ]] || kill "$bench_pid" 2>/dev/null || true
  local keep="${SOAK_OUT:-}"
  if [[ -z "$keep" && ( $rc -ne 0 || $failed -ne 0 ) ]]; then
    keep="$(mktemp -d /tmp/sessiond-soak-failed.XXXXXX)"
  fi
  if [[ -n "$keep" ]]; then
    mkdir -p "$keep"
    cp -r "$work"/. "$keep"/ 2>/dev/null || true
    cp "$svc/redis.log" "$keep/redis.log" 2>/dev/null || true
    echo "$me: the run's files (node log, bench JSON, acknowledged writes, faults) are in $keep" >&2
  fi
  cleanup # bench/lib.sh: the node and the proxies, the work dir
  stop_services
  exit "$rc"
}
trap soak_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

t0="$EPOCHSECONDS"
elapsed() { echo $((EPOCHSECONDS - t0)); }
say() { echo "[+$(elapsed)s] $*" | tee -a "$work/faults.log"; }

# start_proxy NAME TARGET_PORT: sessiond-tcp-proxy in front of the port; sets port_NAME, pid_NAME.
start_proxy() {
  local name="$1" log="$work/$1.log" line=""
  "$proxy_bin" "$2" >"$log" 2>&1 &
  pids+=("$!")
  printf -v "pid_$name" '%s' "$!"
  for _ in $(seq 50); do
    line="$(grep -m1 -o 'listening on 127.0.0.1:[0-9]*' "$log" 2>/dev/null || true)"
    [[ -n "$line" ]] && break
    sleep 0.1
  done
  [[ -n "$line" ]] || die "proxy $name did not start: $(tail -n 5 "$log")"
  printf -v "port_$name" '%s' "${line##*:}"
}
port_rproxy="" pid_rproxy="" port_pproxy="" pid_pproxy="" port_node="" pid_node=""
start_proxy rproxy "$redis_port"
start_proxy pproxy "$pg_port"

# --- the node, through the proxies ------------------------------------------------------------
redis_connect_ms=1000 redis_command_ms=1000 pg_connect_ms=2000 pg_statement_ms=5000
bound_ms=$((redis_connect_ms + redis_command_ms + pg_connect_ms + pg_statement_ms))
bench_timeout_s=$((bound_ms * 2 / 1000 + 5))
cat >"$work/sessiond.toml" <<EOF
[http]
listen = "127.0.0.1:0"

[redis]
url = "redis://127.0.0.1:$port_rproxy/0"
key_prefix = "soak:"
connect_timeout_ms = $redis_connect_ms
command_timeout_ms = $redis_command_ms
reconnect_max_ms = 1000

[postgres]
url = "postgresql://postgres@127.0.0.1:$port_pproxy/sessiond"
schema = "soak"
connect_timeout_ms = $pg_connect_ms
statement_timeout_ms = $pg_statement_ms

[sessions]
ttl_s = 86400
touch_interval_s = 60

[sync]
interval_ms = 1000
max_backoff_ms = 5000
EOF
start node env SESSIOND_NODE_ID=soak "$sessiond" --config "$work/sessiond.toml"
base="http://127.0.0.1:$port_node"

# PostgreSQL's postmaster, for the crash restarts (SIGQUIT is PostgreSQL's immediate shutdown).
pg_data="$(psql "$POSTGRES_URL" -Atc 'show data_directory')"
redis_pid() { cat "$svc/redis.pid"; }
pg_pid() { head -n 1 "$pg_data/postmaster.pid"; }
gone() { ! kill -0 "$1" 2>/dev/null; }
wait_gone() {
  for _ in $(seq 300); do gone "$1" && return 0; sleep 0.1; done
  die "pid $1 did not stop"
}
restart_services() {
  services start >>"$work/services.log" 2>&1 || die "services did not start again: $(tail -n 5 "$work/services.log")"
  [[ "$(cat "$svc/redis.port")" == "$redis_port" && "$(cat "$svc/postgres.port")" == "$pg_port" ]] ||
    die "a service came back on another port (its own was taken meanwhile)"
}
rand_between() { echo $((RANDOM % ($2 - $1 + 1) + $1)); }

# One fault: prints what it does. Restarts: down for 1-5 s; cuts: 2-15 s.
fault() {
  local kind="$1" down pid
  case "$kind" in
    redis-kill | redis-term)
      down="$(rand_between 1 5)"
      pid="$(redis_pid)"
      say "$kind: redis (pid $pid) $([[ $kind == redis-kill ]] && echo SIGKILL || echo SIGTERM), down ${down}s"
      kill "-$([[ $kind == redis-kill ]] && echo KILL || echo TERM)" "$pid"
      wait_gone "$pid"
      sleep "$down"
      restart_services
      say "$kind: redis up again (pid $(redis_pid))"
      ;;
    pg-crash | pg-fast)
      down="$(rand_between 1 5)"
      pid="$(pg_pid)"
      say "$kind: postgres (pid $pid) $([[ $kind == pg-crash ]] && echo 'SIGQUIT (immediate: crash recovery at start)' || echo 'SIGINT (fast shutdown)'), down ${down}s"
      kill "-$([[ $kind == pg-crash ]] && echo QUIT || echo INT)" "$pid"
      wait_gone "$pid"
      sleep "$down"
      restart_services
      say "$kind: postgres up again (pid $(pg_pid))"
      ;;
    redis-cut | pg-cut)
      down="$(rand_between 2 15)"
      pid="$([[ $kind == redis-cut ]] && echo "$pid_rproxy" || echo "$pid_pproxy")"
      say "$kind: network to $([[ $kind == redis-cut ]] && echo redis || echo postgres) cut for ${down}s"
      kill -USR1 "$pid"
      sleep "$down"
      kill -USR2 "$pid"
      say "$kind: restored"
      ;;
  esac
}

cat <<EOF
soak: ${soak_s}s, $rate requests/s open loop over $connections connections, mix $mix, $sessions sessions, $value_bytes-byte data, seed $seed
soak: node pid $pid_node on :$port_node; redis :$redis_port (persisting, AOF everysec) via proxy :$port_rproxy; postgres :$pg_port via proxy :$port_pproxy
soak: node timeouts: redis connect ${redis_connect_ms} ms + command ${redis_command_ms} ms, postgres connect ${pg_connect_ms} ms + statement ${pg_statement_ms} ms = ${bound_ms} ms bound; bench --timeout ${bench_timeout_s}s
soak: load average at start: $(cut -d' ' -f1-3 /proc/loadavg)
EOF

# --- the load, and the faults while it runs ----------------------------------------------------
"$bench" --url "$base" --connections "$connections" --rate "$rate" --duration "${soak_s}s" \
  --warmup 0s --mix "$mix" --sessions "$sessions" --value-bytes "$value_bytes" \
  --timeout "${bench_timeout_s}s" --rss-pid "$pid_node" --acked-file "$work/acked.txt" --json \
  >"$work/bench.json" 2>"$work/bench.log" &
bench_pid="$!"
# The bench prefills first (a second or so) and then starts its window: t0 is close enough.
t0="$EPOCHSECONDS"
say "load started; faults from +${warmup_s}s"
kinds=(redis-kill pg-crash redis-cut pg-cut redis-term pg-fast)
# Shuffle the six kinds (seeded), then repeat them in that order: every kind happens once before
# any happens twice.
for ((i = ${#kinds[@]} - 1; i > 0; i--)); do
  j=$((RANDOM % (i + 1)))
  tmp="${kinds[i]}" kinds[i]="${kinds[j]}" kinds[j]="$tmp"
done
next="$(rand_between "$warmup_s" $((warmup_s + gap_max_s)))"
n=0
cycle_end=0
done_faults=()
while :; do
  ((next + 20 < soak_s - quiet_end_s)) || break # a fault lasts up to ~20 s
  while (($(elapsed) < next)); do sleep 0.5; done
  gone "$pid_node" && break
  gone "$bench_pid" && die "the bench ended early: $(tail -n 5 "$work/bench.log")"
  fault "${kinds[n % ${#kinds[@]}]}"
  done_faults+=("${kinds[n % ${#kinds[@]}]}")
  n=$((n + 1))
  ((n == ${#kinds[@]})) && cycle_end="$(elapsed)" # every kind of fault has happened once
  next=$(($(elapsed) + $(rand_between "$gap_min_s" "$gap_max_s")))
done
say "$n faults; waiting for the load to end"
bench_rc=0
wait "$bench_pid" || bench_rc=$?
bench_pid=""
t_end="$EPOCHSECONDS"
say "load ended (sessiond-bench exit $bench_rc)"
node_alive=1
gone "$pid_node" && node_alive=0

# --- drain: back on Redis, nothing put back pending, then a complete sync --------------------
drain_ok=0
if ((node_alive)); then
  for _ in $(seq 120); do
    st="$(curl -fsS --max-time 5 "$base/v1/status" 2>/dev/null || true)"
    if [[ -n "$st" ]] && python3 -c 'import json,sys
s = json.loads(sys.argv[1])
sys.exit(0 if not s["degraded"] and s["sessions"]["redis_state"] == "serving" and s["sessions"]["put_back_pending"] == 0 and s["postgres"]["up"] else 1)' "$st"; then
      break
    fi
    sleep 1
  done
  for _ in $(seq 30); do
    code="$(curl -sS --max-time 60 -o "$work/sync.json" -w '%{http_code}' -X POST "$base/v1/admin/sync" || true)"
    if [[ "$code" == 200 ]]; then
      backlog="$(curl -fsS "$base/v1/status" | python3 -c 'import json,sys; print(json.load(sys.stdin)["sync"]["backlog"])')"
      [[ "$backlog" == 0 ]] && { drain_ok=1; break; }
    fi
    sleep 2
  done
  say "drain: $(cat "$work/sync.json" 2>/dev/null); status $(curl -fsS "$base/v1/status" | python3 -c 'import json,sys; s=json.load(sys.stdin); print({"degraded": s["degraded"], "sessions": s["sessions"], "sync_backlog": s["sync"]["backlog"], "sync_failed": s["sync"]["failed"]})' 2>/dev/null)"
fi
psql "$POSTGRES_URL" -At -F $'\t' -c "select session_id, version, status, data::text from soak.user_session where session_id like 'bench-%'" \
  >"$work/postgres.tsv" || true
curl -fsS "$base/metrics" >"$work/metrics.txt" 2>/dev/null || true

# --- the checks ----------------------------------------------------------------------------------
status=0
python3 - "$work" "$base" "$node_alive" "$drain_ok" "$bound_ms" "$warmup_s" "$rss_window_s" \
  "$rss_tolerance" "$soak_s" "$sessions" "$t0" "$t_end" "$cycle_end" <<'EOF' || status=$?
import collections, datetime, http.client, json, re, statistics, sys, urllib.parse
work, base = sys.argv[1], sys.argv[2]
node_alive, drain_ok, bound_ms = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
warmup_s, rss_window_s, rss_tol = int(sys.argv[6]), int(sys.argv[7]), float(sys.argv[8])
soak_s, sessions = int(sys.argv[9]), int(sys.argv[10])
t_start, t_end, cycle_end = int(sys.argv[11]), int(sys.argv[12]), int(sys.argv[13])
failures = []

bench = json.load(open(f"{work}/bench.json"))
p = bench["phases"]["sessiond"]

# acknowledged writes: the highest version acknowledged per id
acked = {}
outcomes = collections.Counter()
for line in open(f"{work}/acked.txt"):
    sid, op, version, outcome, _ms = line.split()
    outcomes[f"{op} {outcome}"] += 1
    if outcome in ("200", "201", "204") and op in ("put", "patch"):
        acked[sid] = max(acked.get(sid, 0), int(version))
n_acked = sum(n for k, n in outcomes.items() if k.split()[1] in ("200", "201", "204"))
unknown = sum(n for k, n in outcomes.items() if not k.split()[1].isdigit())
no_version = [s for s, v in acked.items() if v == 0]

pg = {}
for line in open(f"{work}/postgres.tsv"):
    sid, version, st, data = line.rstrip("\n").split("\t")
    pg[sid] = (int(version), st, json.loads(data))
lost = sorted((s for s, v in acked.items() if s not in pg or pg[s][0] < v), key=lambda s: int(s[6:]))
ahead = [s for s, v in acked.items() if s in pg and pg[s][0] > v]
equal = [s for s, v in acked.items() if s in pg and pg[s][0] == v]

# what the node serves (Redis, after the drain) against PostgreSQL
served_diff = []
if node_alive:
    u = urllib.parse.urlparse(base)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    for sid in sorted(acked):
        c.request("GET", f"/v1/sessions/{sid}")
        r = c.getresponse()
        body = r.read()
        if r.status != 200:
            served_diff.append(f"{sid}: GET {r.status}")
            continue
        doc = json.loads(body)
        if sid not in pg or doc["version"] != pg[sid][0] or doc["data"] != pg[sid][2]:
            served_diff.append(f"{sid}: served v{doc['version']}, postgres v{pg.get(sid, (None,))[0]}")

print("\n== soak summary ==")
print(f"load         {p['requests']} requests in {p['duration_s']:.0f} s ({p['throughput_rps']:.1f} req/s), "
      f"status {json.dumps(p['status'], sort_keys=True)}")
print(f"errors       {json.dumps(p['errors'])}; unsent {p.get('unsent', 0)}")
print(f"latency ms   from due time: p50 {p['latency_ms']['p50']:.2f} p99 {p['latency_ms']['p99']:.2f} "
      f"p99.9 {p['latency_ms']['p99_9']:.2f} max {p['latency_ms']['max']:.1f}")
print(f"service ms   sent -> answer: p50 {p['service_ms']['p50']:.2f} p99 {p['service_ms']['p99']:.2f} "
      f"p99.9 {p['service_ms']['p99_9']:.2f} max {p['service_ms']['max']:.1f} (bound {bound_ms} ms)")
print(f"writes       {n_acked} acknowledged ({', '.join(f'{k}: {n}' for k, n in sorted(outcomes.items()))}); "
      f"{unknown} without an answer (outcome unknown)")
print(f"postgres     {len(acked)} ids written: {len(equal)} at the last acknowledged version, "
      f"{len(ahead)} past it, {len(lost)} behind or missing (lost acknowledged writes)")

# How long the node served from Redis: its "sessions: A -> B" log lines during the load
# (degraded and returning serve from PostgreSQL; docs/modes.md).
state, since, spent, changes = "serving", float(t_start), collections.Counter(), 0
for line in open(f"{work}/node.log"):
    m = re.match(r"(\S+Z) \S+ sessions: (\w+) -> (\w+)", line)
    if not m:
        continue
    t = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()
    t = min(max(t, t_start), t_end)
    spent[state] += t - since
    state, since, changes = m.group(3), t, changes + 1
spent[state] += max(0.0, t_end - since)
total = max(1.0, sum(spent.values()))
print("node state   " + ", ".join(f"{k} {v:.0f} s ({100 * v / total:.0f}%)" for k, v in sorted(spent.items()))
      + f"; {changes} changes (degraded and returning serve from PostgreSQL)")

if not node_alive:
    failures.append("sessiond died during the soak")
if not drain_ok:
    failures.append("the sync did not drain (POST /v1/admin/sync with backlog 0) after the load")
if lost:
    failures.append(f"{len(lost)} ids lost acknowledged writes, e.g. " +
                    ", ".join(f"{s} acked v{acked[s]} postgres v{pg[s][0] if s in pg else 'none'}" for s in lost[:5]))
if no_version:
    failures.append(f"{len(no_version)} acknowledged writes carried no ETag version")
if served_diff:
    failures.append(f"{len(served_diff)} sessions served differently from PostgreSQL after the drain, e.g. "
                    + "; ".join(served_diff[:5]))
if len(acked) < sessions:
    failures.append(f"only {len(acked)} of {sessions} ids had an acknowledged write (did the prefill fail?)")

# RSS: the median of the last window against the median of the window after the warm-up.
# The warm-up ends once every kind of fault has happened once: the first Redis outage steps
# RSS up once (about 2 MiB: the node's first operations on PostgreSQL), which is not growth.
# A run too short for a whole cycle compares with the window after WARMUP_S instead.
kb = (p.get("rss") or {}).get("samples_kb") or []
ref = cycle_end if cycle_end and cycle_end + 2 * rss_window_s <= len(kb) else warmup_s
if len(kb) >= ref + 2 * rss_window_s:
    early = statistics.median(kb[ref:ref + rss_window_s])
    late = statistics.median(kb[-rss_window_s:])
    change = 100.0 * (late - early) / early
    before = statistics.median(kb[warmup_s:warmup_s + rss_window_s])
    print(f"rss          after warm-up (s {ref}-{ref + rss_window_s}"
          f"{', every fault once' if ref == cycle_end else ''}) {early / 1024:.1f} MiB, "
          f"last {rss_window_s} s {late / 1024:.1f} MiB ({change:+.1f}%), max {max(kb) / 1024:.1f} MiB, "
          f"first {kb[0] / 1024:.1f} MiB, s {warmup_s}-{warmup_s + rss_window_s} {before / 1024:.1f} MiB; "
          f"{len(kb)} samples")
    if abs(change) > rss_tol:
        failures.append(f"RSS moved {change:+.1f}% (more than {rss_tol:g}%)")
else:
    failures.append(f"only {len(kb)} RSS samples (need WARMUP_S + 2 * RSS_WINDOW_S)")

if p["errors"]["timeout"]:
    failures.append(f"{p['errors']['timeout']} requests timed out in the bench (hung past every node timeout)")
if p["service_ms"]["max"] > bound_ms:
    failures.append(f"the slowest answer took {p['service_ms']['max']:.0f} ms, over the {bound_ms} ms the node's timeouts allow")

if failures:
    print("\nSOAK FAILED:")
    for f in failures:
        print(f"  - {f}")
    sys.exit(1)
print("\nsoak passed: every acknowledged write is in PostgreSQL, RSS flat, no request hung")
EOF
failed=$status
echo "faults       ${#done_faults[@]}: ${done_faults[*]} (seed $seed; times in the log above)"
echo "soak: load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
exit "$status"
