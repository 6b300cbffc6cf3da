// What the queue actors of a node share: the store, the parked leases, the metrics, the webhook
// client, the clock and the settings. Built once by the node (app/queues); read-only afterwards.
#pragma once

#include "adapters/http/client.hpp"
#include "adapters/queue/lease_waiters.hpp"
#include "adapters/queue/queue_metrics.hpp"
#include "adapters/queue/store.hpp"
#include "config/config.hpp"
#include "messages/published.hpp"
#include "messages/queue.hpp"
#include "model/ttl.hpp"

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace sessiond::actors {

/// The settings a queue's scripts apply, from its configuration.
queue::queue_policy policy_of(const config::queue_settings& s);

/// What the keeper read last of one queue (for /v1/status and the metrics' gauges).
struct queue_snapshot {
  queue::queue_counts counts;
  std::int64_t counted_at_ms = 0; ///< 0: not counted yet
};

/// What a manager shows of its pool (for /v1/status).
struct pool_snapshot {
  std::int64_t concurrency = 0;
  std::int64_t busy = 0;
  std::map<std::string, std::string> circuits; ///< type -> closed | open | half-open
};

/// Redis memory as the keeper last read it (INFO memory of the queue's Redis).
struct queue_memory {
  bool known = false;
  std::uint64_t used = 0;
  std::uint64_t max = 0; ///< 0: no limit
  std::string policy;
};

struct queue_env {
  queue::store* store = nullptr;
  queue::lease_waiters* waiters = nullptr;
  queue::queue_metrics* meters = nullptr;
  http::client* webhooks = nullptr;
  const model::clock* clock = nullptr;
  const config::queues_section* cfg = nullptr;
  std::string node_id;
  /// level ("info", "warn", "error") and one line.
  std::function<void(const std::string&, const std::string&)> log;
  /// Jobs may have become waiting in a queue (a promotion, an expired lease): its managers look.
  std::function<void(const std::string& queue)> wake;

  mutable messages::published<std::map<std::string, queue_snapshot>> queues;
  mutable messages::published<std::map<std::string, pool_snapshot>> pools;
  mutable messages::published<queue_memory> memory;
};

} // namespace sessiond::actors
