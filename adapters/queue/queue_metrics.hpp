// The job queue's Prometheus metrics, per queue (label `queue`; the circuit also by `type`).
// Counters count what this node did; gauges show what the node last read from Redis. A queue's
// meters are registered on first use and then updated without a lock.
#pragma once

#include "adapters/metrics/registry.hpp"
#include "adapters/queue/store.hpp"

#include <map>
#include <memory>
#include <mutex>
#include <string>

namespace sessiond::queue {

/// One queue's meters (references into the registry; valid for the registry's life).
struct queue_meters {
  metrics::Counter &enqueued, &leased, &completed, &failed, &retried, &stalled, &dead_lettered,
      &lost, &rejected_full, &rejected_memory;
  metrics::Histogram &processing, &wait;
  metrics::Gauge &waiting, &delayed, &active, &completed_now, &failed_now, &paused_jobs, &paused,
      &oldest_waiting, &max_wait, &busy;
};

/// Counts one finish outcome: completed, failed (and retried or dead-lettered) with the time
/// since its lease in the processing histogram, or a lost lease.
void record_finish(queue_meters& m, const finished_job& f, std::int64_t now_ms);

class queue_metrics {
public:
  explicit queue_metrics(metrics::Registry& registry);
  /// The meters of `queue`, registered the first time. Thread-safe.
  queue_meters& of(const std::string& queue);
  /// 1 while the built-in handler circuit of `type` in `queue` is open (or half-open).
  metrics::Gauge& circuit(const std::string& queue, const std::string& type);
  metrics::Gauge& eviction_unsafe() { return eviction_unsafe_; }
  metrics::Gauge& waiters() { return waiters_; }
  metrics::Gauge& redis_up() { return redis_up_; }
  metrics::Gauge& redis_memory_ratio() { return redis_memory_ratio_; }
  /// Queue requests refused before reaching a queue: past queues.max_in_flight, or a long poll
  /// past queues.max_waiters (503 + Retry-After).
  metrics::Counter& overload_in_flight() { return overload_in_flight_; }
  metrics::Counter& overload_waiters() { return overload_waiters_; }
  /// Queue requests answered 503 because Redis failed or refused.
  metrics::Counter& redis_failures() { return redis_failures_; }

private:
  metrics::Registry& registry_;
  metrics::Gauge& eviction_unsafe_;
  metrics::Gauge& waiters_;
  metrics::Gauge& redis_up_;
  metrics::Gauge& redis_memory_ratio_;
  metrics::Counter& overload_in_flight_;
  metrics::Counter& overload_waiters_;
  metrics::Counter& redis_failures_;
  std::mutex mtx_;
  std::map<std::string, std::unique_ptr<queue_meters>> queues_;
};

} // namespace sessiond::queue
