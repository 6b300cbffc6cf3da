# Shared by the bench scripts (bench/metrics-cost.sh, bench/encryption-cost.sh, bench/ceiling.sh,
# bench/soak.sh); sourced, not run.
# Before sourcing, set `me` (the script's name for messages). Provides:
#   root, build (BUILD_DIR, default build), sessiond, bench   paths
#   duration, connections, mix, value_bytes, sessions         the workload (DURATION 10s,
#                           CONNECTIONS 64, MIX get=80,put=20, VALUE_BYTES 512, SESSIONS 10000)
#   die MESSAGE                                                exit 1 with "<me>: MESSAGE"
#   work                                                       a temp dir, removed at exit
#   start NAME COMMAND...   runs COMMAND in the background (killed at exit), waits for its
#                           "listening on http://127.0.0.1:PORT" line; sets port_NAME, pid_NAME
#   cpu_ticks PID, tick_us  utime + stime of PID in clock ticks, and a tick in microseconds
# and checks that REDIS_URL is set, both binaries are built and python3 is there.
# shellcheck shell=bash

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
[[ "$build" = /* ]] || build="$root/$build"
sessiond="$build/app/sessiond"
bench="$build/bench/sessiond-bench"
# shellcheck disable=SC2034 # used by the scripts that source this file
{
  duration="${DURATION:-10s}"
  connections="${CONNECTIONS:-64}"
  mix="${MIX:-get=80,put=20}"
  value_bytes="${VALUE_BYTES:-512}"
  sessions="${SESSIONS:-10000}"
}

me="${me:?set me before sourcing bench/lib.sh}"
die() { echo "$me: $*" >&2; exit 1; }
[[ -n "${REDIS_URL:-}" ]] || die "REDIS_URL is not set (eval \"\$(scripts/services env)\")"
[[ -x "$sessiond" && -x "$bench" ]] || die "build sessiond and sessiond-bench in $build first"
command -v python3 >/dev/null || die "python3 is needed to read the bench's JSON"

work="$(mktemp -d "/tmp/sessiond-$me.XXXXXX")"
pids=()
# shellcheck disable=SC2317 # invoked through the EXIT trap
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

start() {
  local name="$1" log="$work/$1.log" line=""
  shift
  "$@" >"$log" 2>&1 &
  pids+=("$!")
  printf -v "pid_$name" '%s' "$!"
  for _ in $(seq 100); do
    line="$(grep -m1 -o 'listening on http://127.0.0.1:[0-9]*' "$log" || true)"
    [[ -n "$line" ]] && break
    sleep 0.1
  done
  [[ -n "$line" ]] || die "$name did not start: $(tail -n 5 "$log")"
  printf -v "port_$name" '%s' "${line##*:}"
}

# cpu_ticks PID: fields 14 and 15 of /proc/PID/stat, counted after the ')'.
cpu_ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
# shellcheck disable=SC2034 # used by the scripts that source this file
tick_us=$((1000000 / $(getconf CLK_TCK)))
