#!/usr/bin/env bash
# The Redis of `scripts/services start --persist` (what scripts/run-local starts) keeps every
# acknowledged write across a SIGKILL of redis-server and across stop and start; one started
# without it (what scripts/test starts) does not. Runs its own services in temp dirs on free
# ports, so the services the suite runs on are not touched. Registered in ctest as
# test_durable_redis (labels integration, scripts).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"
services="$root/scripts/services"
# The services of the suite (scripts/test exports their dir) and a caller's settings stay out.
unset SESSIOND_SERVICES_DIR SESSIOND_SERVICES_PERSIST SESSIOND_REDIS_CLUSTER
export SESSIOND_SERVICES_FAST=1
keys=2000

dirs=()
# shellcheck disable=SC2317 # invoked through the EXIT trap
cleanup() {
  local rc=$? d pg_root
  trap - EXIT
  for d in "${dirs[@]}"; do
    SESSIOND_SERVICES_DIR="$d" "$services" stop >/dev/null 2>&1 || true
    pg_root="$(head -n 1 "$d/postgres.root" 2>/dev/null || true)"
    if [[ "$pg_root" == /tmp/sessiond-pg.* ]]; then
      rm -rf "$pg_root"
    fi
    rm -rf "$d"
  done
  if [[ $rc -eq 0 ]]; then
    echo "PASS: test_durable_redis"
  else
    echo "FAIL: test_durable_redis (exit $rc)" >&2
  fi
  exit "$rc"
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

step() { echo "--- $*"; }

# start_services DIR ARGS...: scripts/services start in DIR; exports its env (REDIS_PORT, ...).
start_services() {
  local dir="$1" out
  shift
  out="$(SESSIOND_SERVICES_DIR="$dir" "$services" start "$@")" || fail "services start $* in $dir"
  eval "$out"
}

cli() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }

# config_get NAME: the running Redis's value of NAME.
config_get() { cli config get "$1" | sed -n 2p; }

# write_keys PREFIX: $keys strings, one hash and one list, each acknowledged by Redis.
write_keys() {
  local i
  for ((i = 1; i <= keys; i++)); do
    printf 'SET %s:%d v%d\n' "$1" "$i" "$i"
  done | cli >/dev/null
  [[ "$(cli hset "$1:h" a 1 b 2)" == 2 ]] || fail "HSET $1:h"
  [[ "$(cli rpush "$1:l" x y z)" == 3 ]] || fail "RPUSH $1:l"
}

# check_keys PREFIX: every key write_keys PREFIX wrote is there with its value.
check_keys() {
  local n i
  n="$(cli eval "return #redis.call('keys', ARGV[1])" 0 "$1:*")"
  [[ "$n" == $((keys + 2)) ]] || fail "$n keys $1:* after the restart, wrote $((keys + 2))"
  for i in 1 $((keys / 2)) "$keys"; do
    [[ "$(cli get "$1:$i")" == "v$i" ]] || fail "$1:$i is '$(cli get "$1:$i")', wrote v$i"
  done
  [[ "$(cli hget "$1:h" b)" == 2 ]] || fail "$1:h lost field b"
  [[ "$(cli lrange "$1:l" 0 -1 | tr '\n' ' ')" == "x y z " ]] || fail "$1:l lost its items"
}

# wait_aof_quiet: no AOF rewrite in progress or scheduled, and the last write to the AOF went
# through; then a little over one second, past the next `appendfsync everysec`.
wait_aof_quiet() {
  local i info
  for ((i = 0; i < 300; i++)); do
    info="$(cli info persistence | tr -d '\r')"
    if [[ "$info" == *aof_rewrite_in_progress:0* && "$info" == *aof_rewrite_scheduled:0* ]]; then
      [[ "$info" == *aof_enabled:1* ]] || fail "the AOF is off"
      [[ "$info" == *aof_last_write_status:ok* ]] || fail "the last AOF write failed: $info"
      sleep 1.2
      return 0
    fi
    sleep 0.1
  done
  fail "an AOF rewrite still runs after 30 s"
}

# kill_redis DIR: SIGKILL the services' redis-server, as a crash would; wait until it is gone.
kill_redis() {
  local pid i
  pid="$(head -n 1 "$1/redis.pid")"
  [[ "$pid" =~ ^[0-9]+$ ]] || fail "no pid in $1/redis.pid"
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "redis-server.*:$REDIS_PORT" ||
    fail "pid $pid is not our redis-server on port $REDIS_PORT"
  kill -KILL "$pid"
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  fail "redis-server $pid still runs after SIGKILL"
}

dir="$(mktemp -d "${TMPDIR:-/tmp}/sessiond-durable.XXXXXX")"
dirs+=("$dir")

step "start --persist: AOF with appendfsync everysec and RDB snapshots, in the state dir"
start_services "$dir" --persist
[[ "$(config_get appendonly)" == yes ]] || fail "appendonly is $(config_get appendonly)"
[[ "$(config_get appendfsync)" == everysec ]] || fail "appendfsync is $(config_get appendfsync)"
[[ -n "$(config_get save)" ]] || fail "no RDB snapshot points (save '')"
[[ "$(config_get dir)" == "$dir/redis" ]] || fail "redis dir is $(config_get dir), not $dir/redis"
[[ -f "$dir/redis.persist" ]] || fail "$dir/redis.persist not written"

step "write $keys keys, a hash and a list; SIGKILL redis-server; start again (no flag)"
write_keys crash
wait_aof_quiet
port="$REDIS_PORT"
kill_redis "$dir"
log_from="$(stat -c %s "$dir/redis.log")"
start_services "$dir"
[[ "$REDIS_PORT" == "$port" ]] || fail "redis came back on port $REDIS_PORT, not $port"
tail -c "+$((log_from + 1))" "$dir/redis.log" | grep -q 'DB loaded from append only file' ||
  fail "the restarted redis did not load the AOF (see $dir/redis.log)"
[[ "$(config_get appendonly)" == yes ]] || fail "restarted without the AOF"
check_keys crash

step "write more; scripts/services stop saves (SHUTDOWN SAVE); start again"
write_keys stop
log_from="$(stat -c %s "$dir/redis.log")"
SESSIOND_SERVICES_DIR="$dir" "$services" stop >/dev/null 2>&1 || fail "services stop"
tail -c "+$((log_from + 1))" "$dir/redis.log" | grep -q 'DB saved on disk' ||
  fail "stop did not save (see $dir/redis.log)"
[[ -s "$dir/redis/dump.rdb" ]] || fail "no dump.rdb after stop"
start_services "$dir"
check_keys crash
check_keys stop

step "control: without --persist (as scripts/test starts it) a SIGKILL loses the keys"
volatile="$(mktemp -d "${TMPDIR:-/tmp}/sessiond-durable.XXXXXX")"
dirs+=("$volatile")
start_services "$volatile"
[[ "$(config_get appendonly)" == no ]] || fail "a plain start has appendonly $(config_get appendonly)"
write_keys gone
sleep 1.2
kill_redis "$volatile"
start_services "$volatile"
[[ "$(cli dbsize)" == 0 ]] || fail "a Redis without persistence kept $(cli dbsize) keys"
