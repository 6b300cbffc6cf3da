#!/usr/bin/env bash
# Redis CPU per session write and read, key layout 1 against layout 2, same run, same Redis:
# INFO commandstats (usec_per_call) over redis-benchmark -P 8 runs of each script on 10,000
# sessions with 512-byte data, alternating old and new ROUNDS times. The writes are updates of
# existing sessions (the common save); a create of layout 2 adds one index_add, measured apart.
#   bench/write-cost.sh [redis-host] [redis-port] [rounds]
# Needs redis-cli, redis-benchmark and python3. Uses keys under "wcbench:" and deletes them.
set -euo pipefail
host="${1:-127.0.0.1}" port="${2:-6379}" rounds="${3:-3}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cli() { redis-cli -h "$host" -p "$port" "$@"; }

new_src="$(python3 - "$root/actors/redis_scripts.cpp" <<'PY'
import re, sys
src = open(sys.argv[1]).read()
body = lambda n: re.search(r'constexpr const char\* ' + n + r' = R"lua\((.*?)\)lua";', src, re.S).group(1)
print(body('check_condition') + body('write_body'))
PY
)"
idx_src="$(python3 - "$root/actors/redis_scripts.cpp" <<'PY'
import re, sys
src = open(sys.argv[1]).read()
print(re.search(r'constexpr const char\* index_add_body = R"lua\((.*?)\)lua";', src, re.S).group(1))
PY
)"
old_sha="$(cli SCRIPT LOAD "$(cat "$root/bench/lua/write_layout1.lua")")"
new_sha="$(cli SCRIPT LOAD "$new_src")"
idx_sha="$(cli SCRIPT LOAD "$idx_src")"
data="{\"blob\":\"$(head -c 2000 /dev/urandom | base64 -w0 | tr -d '+/=' | head -c 498)\"}"
now="$(($(date +%s) * 1000))"
ex="$((now + 3600000))"
n=100000

# usec_per_call of one command from INFO commandstats.
per_call() { cli INFO commandstats | tr -d '\r' | sed -n "s/^cmdstat_$1:.*usec_per_call=\([0-9.]*\).*/\1/p"; }

run() { # label, redis-benchmark command...
  local label="$1"; shift
  cli CONFIG RESETSTAT >/dev/null
  redis-benchmark -h "$host" -p "$port" -n "$n" -c 8 -P 8 -r 10000 -q "$@" >/dev/null
  printf '%-28s %s us/call\n' "$label" "$(per_call "$(tr '[:upper:]' '[:lower:]' <<<"$1")")"
}

for ((i = 1; i <= rounds; i++)); do
  echo "round $i"
  run "layout 1 write (EVALSHA)" EVALSHA "$old_sha" 3 wcbench:s:__rand_int__ wcbench:u:u \
    wcbench:dirty:0 __rand_int__ u "$data" "$now" 3600 604800 "" wcbench:u: "$ex"
  run "layout 2 write (EVALSHA)" EVALSHA "$new_sha" 2 "wcbench:s{7}:__rand_int__" "wcbench:dirty{7}" \
    __rand_int__ u "$data" "$now" 3600 604800 "" "$ex" 0
  run "layout 2 index_add" EVALSHA "$idx_sha" 1 "wcbench:u{__rand_int__}" "$now" __rand_int__ \
    "$now" "$ex"
  run "read (HMGET, 9 fields)" HMGET "wcbench:s{7}:__rand_int__" v u st ca la ex ttl d t
done
cli --scan --pattern 'wcbench:*' | xargs -r -n 1000 redis-cli -h "$host" -p "$port" DEL >/dev/null
