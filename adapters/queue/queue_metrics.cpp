// The job queue's metrics (see queue_metrics.hpp and the Signals table of docs/operations.md).
#include "adapters/queue/queue_metrics.hpp"

#include "adapters/metrics/helpers.hpp"
#include "adapters/metrics/metric.hpp"

#include <algorithm>

namespace sessiond::queue {

namespace {

using metrics::Labels;

metrics::Counter& counter(metrics::Registry& r, const char* name, const char* help,
                          const Labels& l) {
  return metrics::add_counter(r, name, help, l);
}

metrics::Gauge& gauge(metrics::Registry& r, const char* name, const char* help, const Labels& l) {
  return metrics::add_gauge(r, name, help, l);
}

metrics::Histogram& histogram(metrics::Registry& r, const char* name, const char* help,
                              const Labels& l) {
  static const metrics::Histogram::BucketBoundaries buckets = {
      0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600};
  return metrics::BuildHistogram().Name(name).Help(help).Register(r).Add(l, buckets);
}

metrics::Gauge& jobs(metrics::Registry& r, const std::string& q, const char* state) {
  return gauge(r, "sessiond_queue_jobs",
               "Jobs of a queue by state, as this node last counted them in Redis (paused: "
               "waiting jobs of a paused queue)",
               {{"queue", q}, {"state", state}});
}

constexpr const char* rejected_help =
    "Enqueues refused by backpressure: full (max_length, 429) or memory (Redis memory above "
    "queues.max_redis_memory_ratio, 503)";

constexpr const char* overload_help =
    "Queue requests refused with 503 before reaching their queue: in_flight (queues.max_in_flight "
    "requests in flight) or waiters (queues.max_waiters long polls parked)";

} // namespace

void record_finish(queue_meters& m, const finished_job& f, std::int64_t now_ms) {
  using o = finish_outcome;
  if (f.what == o::lost || f.what == o::not_found)
    return m.lost.Increment();
  if (f.lease_start_ms > 0)
    m.processing.Observe(static_cast<double>(std::max<std::int64_t>(0, now_ms - f.lease_start_ms)) /
                         1000.0);
  if (f.what == o::completed)
    return m.completed.Increment();
  m.failed.Increment();
  if (f.what == o::failed)
    m.dead_lettered.Increment();
  else
    m.retried.Increment();
}

queue_metrics::queue_metrics(metrics::Registry& registry)
    : registry_(registry),
      eviction_unsafe_(gauge(registry, "sessiond_queue_redis_eviction_unsafe",
                             "1 when the queue's Redis has a maxmemory-policy other than "
                             "noeviction: acknowledged jobs may be evicted",
                             {})),
      waiters_(gauge(registry, "sessiond_queue_lease_waiters",
                     "Long-poll lease requests parked on this node", {})),
      redis_up_(gauge(registry, "sessiond_queue_redis_up",
                      "1 when a connection to the queue's Redis is up", {})),
      redis_memory_ratio_(gauge(registry, "sessiond_queue_redis_memory_used_ratio",
                                "used_memory / maxmemory of the queue's Redis (0: no limit)", {})),
      overload_in_flight_(counter(registry, "sessiond_queue_overload_rejections_total",
                                  overload_help, {{"reason", "in_flight"}})),
      overload_waiters_(counter(registry, "sessiond_queue_overload_rejections_total", overload_help,
                                {{"reason", "waiters"}})),
      redis_failures_(counter(registry, "sessiond_queue_redis_failures_total",
                              "Queue requests answered 503 because Redis failed or refused", {})) {}

queue_meters& queue_metrics::of(const std::string& q) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto it = queues_.find(q);
  if (it != queues_.end())
    return *it->second;
  auto& r = registry_;
  Labels l{{"queue", q}};
  auto m = std::unique_ptr<queue_meters>(new queue_meters{
      counter(r, "sessiond_queue_enqueued_total", "Jobs enqueued through this node", l),
      counter(r, "sessiond_queue_leased_total", "Jobs leased to workers through this node", l),
      counter(r, "sessiond_queue_completed_total", "Jobs completed through this node", l),
      counter(r, "sessiond_queue_failed_total",
              "Failed attempts reported through this node (retried or not)", l),
      counter(r, "sessiond_queue_retried_total", "Failed attempts that will be tried again", l),
      counter(r, "sessiond_queue_stalled_total",
              "Leases that expired without an answer (found by this node)", l),
      counter(r, "sessiond_queue_dead_lettered_total",
              "Jobs that failed for good (attempts or stalls used up)", l),
      counter(r, "sessiond_queue_lost_leases_total",
              "Reports refused because the lease was lost (409)", l),
      counter(r, "sessiond_queue_rejected_total", rejected_help,
              {{"queue", q}, {"reason", "full"}}),
      counter(r, "sessiond_queue_rejected_total", rejected_help,
              {{"queue", q}, {"reason", "memory"}}),
      histogram(r, "sessiond_queue_processing_seconds",
                "From a job's lease to its report, reported through this node", l),
      histogram(r, "sessiond_queue_wait_seconds",
                "From a job becoming waiting to its lease, leased through this node", l),
      jobs(r, q, "waiting"),
      jobs(r, q, "delayed"),
      jobs(r, q, "active"),
      jobs(r, q, "completed"),
      jobs(r, q, "failed"),
      jobs(r, q, "paused"),
      gauge(r, "sessiond_queue_paused", "1 while the queue is paused", l),
      gauge(r, "sessiond_queue_oldest_waiting_seconds",
            "Age of the oldest job next in line to be leased (0: none waiting)", l),
      gauge(r, "sessiond_queue_max_wait_seconds",
            "The queue's max_wait_s: QueueJobsWaitingTooLong fires past it", l),
      gauge(r, "sessiond_queue_workers_busy", "Built-in worker slots of this node in use", l)});
  auto& ref = *m;
  queues_.emplace(q, std::move(m));
  return ref;
}

metrics::Gauge& queue_metrics::circuit(const std::string& q, const std::string& type) {
  return gauge(registry_, "sessiond_queue_circuit_open",
               "1 while leasing of a job type stops because its built-in handler keeps failing",
               {{"queue", q}, {"type", type}});
}

} // namespace sessiond::queue
