// Node-level metrics refreshed at each scrape of /metrics: Redis connection state and counters,
// session actor counters, per-shard operations in flight, and the process metrics.
#pragma once

#include "adapters/metrics/helpers.hpp"
#include "adapters/metrics/process_metrics.hpp"
#include "adapters/metrics/registry.hpp"
#include "adapters/redis/client.hpp"
#include "messages/sync.hpp"

#include <cstdint>
#include <mutex>
#include <vector>

namespace sessiond::app {

/// What the node reads from its parts at scrape time.
struct node_sample {
  redis::client_stats redis;
  bool redis_up = false;
  std::uint64_t redis_failures = 0;
  std::uint64_t shard_restarts = 0;
  std::uint64_t router_restarts = 0;
  std::uint64_t cas_retries = 0;
  std::uint64_t touches = 0;
  std::vector<std::int64_t> in_flight; ///< per shard
  messages::sync_status::snapshot sync;
  bool degraded = false;
  std::uint64_t served_postgres = 0;  ///< session operations answered from PostgreSQL
  std::uint64_t mirror_failures = 0;  ///< rows not copied into Redis (shadow, redis-read)
  std::uint64_t put_back = 0;         ///< sessions put back into Redis
  std::int64_t put_back_pending = -1; ///< notes left (-1: unknown)
  std::int64_t mode_conflicts = 0;    ///< live nodes in a mode incompatible with this node's
  std::int64_t cluster_masters = 0;   ///< Redis Cluster masters known (0: a single Redis)
  std::int64_t slots_unserved = 0;    ///< cluster slots whose master has no connection up
};

class node_metrics {
public:
  node_metrics(metrics::Registry& registry, std::size_t shards, const std::string& mode);
  /// Sets the gauges and advances the counters by what changed since the last call.
  void update(const node_sample& s);
  /// One finished sync run (from the sync actor's thread).
  void observe_sync(const messages::sync_report& r);

private:
  using follower = metrics::counter_follower;

  std::mutex mtx_; ///< one update at a time (followers advance by difference)
  metrics::process_metrics process_;
  metrics::Gauge& redis_up_;
  metrics::Gauge& redis_connections_;
  follower redis_commands_, redis_errors_, redis_reconnects_, op_failures_, shard_restarts_,
      router_restarts_, cas_retries_, touches_;
  std::vector<metrics::Gauge*> in_flight_;
  metrics::Gauge &sync_backlog_, &sync_rejected_, &sync_last_success_, &sync_circuit_open_,
      &postgres_up_, &degraded_;
  follower sync_runs_, sync_failures_, sync_rows_, sync_rejected_rows_, served_postgres_,
      mirror_failures_, put_back_;
  metrics::Gauge& put_back_pending_;
  metrics::Gauge& mode_conflicts_;
  follower cluster_moved_, cluster_ask_, cluster_retries_, cluster_refreshes_;
  metrics::Gauge &cluster_masters_, &slots_unserved_;
  metrics::Histogram& sync_duration_;
};

} // namespace sessiond::app
