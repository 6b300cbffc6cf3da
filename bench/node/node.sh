#!/usr/bin/env bash
# express-session on connect-redis and on SessiondStore (@sessiond/client), the same Express
# app, on the same Redis, in the same run, under the same autocannon load (bench/node/run.mjs).
# Writes keys under its own prefix only (no FLUSHALL); sessiond uses PostgreSQL schema node_bench.
#
#   eval "$(SESSIOND_SERVICES_DIR=/tmp/bench-svc scripts/services start)"
#   BUILD_DIR=build bench/node/node.sh
#
# BUILD_DIR (build), CONNECTIONS (32), DURATION_S (20), WARMUP_S (3), ROUNDS (1: each round runs
# both, in alternating order), SESSIONS (CONNECTIONS: one cookie per connection), WRITE_EVERY (5:
# one POST /w that changes the session per 5 requests, the others GET /r that only read it).
# npm installs autocannon, express, express-session, connect-redis and redis from
# bench/node/package-lock.json into bench/node/node_modules (git-ignored) once.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="$root/${BUILD_DIR:-build}/app/sessiond"
[[ -x "$bin" ]] || { echo "node.sh: $bin not built (cmake --build build --target sessiond)" >&2; exit 1; }
[[ -n "${REDIS_URL:-}" ]] || { echo "node.sh: REDIS_URL is not set (scripts/services env)" >&2; exit 1; }
command -v node >/dev/null || { echo "node.sh: node (20 or later) is needed" >&2; exit 1; }
if [[ ! -d "$here/node_modules/autocannon" ]]; then
  echo "node.sh: installing from bench/node/package-lock.json (npm ci)" >&2
  (cd "$here" && npm ci --no-audit --no-fund >&2)
fi
echo "node.sh: $(nproc) cores, $(node --version), sessiond $("$bin" --version 2>/dev/null || echo '?')" >&2
SESSIOND_BIN="$bin" exec node "$here/run.mjs"
