#!/usr/bin/env bash
# The cost of metrics on the session hot path: two sessiond nodes on the same Redis (and
# PostgreSQL), one with metrics.enabled = true and one with SESSIOND_METRICS_ENABLED=false, loaded
# by sessiond-bench alternately in interleaved rounds (A B, B A, A B, …) so that drift on the
# machine falls on both alike (bench/ab.sh). Prints each round, the median of each node and the ratio, and the
# CPU time each sessiond spent per request (utime + stime from /proc), which other load on the
# machine disturbs far less than throughput.
#
#   eval "$(scripts/services env)"     # REDIS_URL (and POSTGRES_URL) of running services
#   bench/metrics-cost.sh              # defaults below; override with the variables
#
# BUILD_DIR (build), ROUNDS (6, even), DURATION (10s), CONNECTIONS (64),
# MIX (get=80,put=20), VALUE_BYTES (512), SESSIONS (10000), SCRAPE_S (15: GET /metrics on the
# metrics node at the start of its rounds and every SCRAPE_S seconds, as Prometheus would; 0 for
# none). The nodes leave their sessions under the Redis key prefixes metrics-cost-on: and
# metrics-cost-off: and in the PostgreSQL schemas metrics_cost_on and metrics_cost_off.
set -euo pipefail

me=metrics-cost
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
scrape_s="${SCRAPE_S:-15}"
# shellcheck source=bench/ab.sh
source "$(dirname "${BASH_SOURCE[0]}")/ab.sh"

ab_start_node on metrics-cost SESSIOND_METRICS_ENABLED=true
ab_start_node off metrics-cost SESSIOND_METRICS_ENABLED=false
curl -fsS "http://127.0.0.1:$port_on/metrics" >/dev/null || die "the metrics node serves no /metrics"
[[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port_off/metrics")" == 404 ]] ||
  die "the node with SESSIOND_METRICS_ENABLED=false still serves /metrics"
ab_warm

# The metrics node is scraped during its rounds, as Prometheus would.
scraper=""
ab_before_round() {
  [[ "$1" == on && "$scrape_s" != 0 ]] || return 0
  (while curl -fsS "http://127.0.0.1:$port_on/metrics" >/dev/null; do sleep "$scrape_s"; done) &
  scraper="$!"
}
ab_after_round() {
  [[ -z "$scraper" ]] || { kill "$scraper"; wait "$scraper" 2>/dev/null || true; }
  scraper=""
}

ab_compare metrics-on metrics-off "target: within 3%"
