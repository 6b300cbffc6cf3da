#!/usr/bin/env bash
# The cost of encryption at rest on the session hot path: two sessiond nodes on the same Redis
# (and PostgreSQL), one with encryption.keys_file set and one without, loaded by sessiond-bench
# alternately in interleaved rounds (A B, B A, A B, …) so that drift on the machine falls on both
# alike (bench/ab.sh). Prints each round, the median of each node and the ratio, and the CPU time each
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
keys="$work/keys"
echo "bench:$(openssl rand -base64 32)" >"$keys"
# shellcheck source=bench/ab.sh
source "$(dirname "${BASH_SOURCE[0]}")/ab.sh"

ab_start_node on encryption-cost SESSIOND_ENCRYPTION_KEYS_FILE="$keys"
ab_start_node off encryption-cost SESSIOND_ENCRYPTION_KEYS_FILE=
[[ "$(curl -fsS "http://127.0.0.1:$port_on/v1/status" | python3 -c 'import json,sys; print(json.load(sys.stdin)["encryption"]["enabled"])')" == True ]] ||
  die "the node with a keys file does not say encryption is on"
ab_warm

# The warm-up wrote sessions through each node: the encrypted node's are sealed, the other's not.
first_byte() { # prefix: the first byte (hex) of one session's d under that prefix
  local key
  key="$(redis-cli -u "$REDIS_URL" --scan --pattern "$1s{*" | head -n 1)"
  redis-cli -u "$REDIS_URL" --no-raw HGET "$key" d | head -c 5
}
[[ "$(first_byte encryption-cost-on:)" == '"\xe1' ]] || die "the encrypted node's values are not sealed"
[[ "$(first_byte encryption-cost-off:)" == '"{'* ]] || die "the other node's values are not plaintext"

ab_compare encrypted plaintext
