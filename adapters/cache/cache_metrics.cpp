// See cache_metrics.hpp.
#include "adapters/cache/cache_metrics.hpp"

#include "adapters/metrics/helpers.hpp"
#include "adapters/metrics/metric.hpp"

namespace sessiond::cache {

namespace {

using metrics::Labels;

using metrics::add_counter;
using metrics::add_gauge;

constexpr const char* skipped_help =
    "Cache writes skipped: redis_down (the cache's Redis unreachable) or memory (its used memory "
    "above cache.max_redis_memory_ratio of maxmemory)";

std::unique_ptr<cache_meters> meters_of(metrics::Registry& r, const std::string& ns) {
  Labels l{{"namespace", ns}};
  auto with = [&](const char* k, const char* v) {
    Labels out = l;
    out[k] = v;
    return out;
  };
  static const metrics::Histogram::BucketBoundaries buckets = {
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
  return std::unique_ptr<cache_meters>(new cache_meters{
      add_counter(r, "sessiond_cache_hits_total",
                  "Cache reads answered from the near cache or Redis, fresh (near hits included)",
                  l),
      add_counter(r, "sessiond_cache_near_hits_total",
                  "Cache reads answered from this node's near cache", l),
      add_counter(r, "sessiond_cache_misses_total",
                  "Cache reads that found no fresh value (then loaded, or 404 without a loader)",
                  l),
      add_counter(r, "sessiond_cache_loads_total", "Loader queries this node ran", l),
      add_counter(r, "sessiond_cache_load_errors_total",
                  "Loader queries that failed (PostgreSQL down, a statement error, a bad value)",
                  l),
      add_counter(r, "sessiond_cache_stale_served_total",
                  "Reads answered with a value past its TTL because its loader failed", l),
      add_counter(r, "sessiond_cache_single_flight_waits_total",
                  "Reads that waited for a load of the same key already running", l),
      add_counter(r, "sessiond_cache_early_refreshes_total",
                  "Background reloads of a hot key before its expiry (XFetch)", l),
      add_counter(r, "sessiond_cache_invalidations_total",
                  "Keys removed by invalidations this node ran (by key, prefix or all)", l),
      add_counter(r, "sessiond_cache_skipped_writes_total", skipped_help,
                  with("reason", "redis_down")),
      add_counter(r, "sessiond_cache_skipped_writes_total", skipped_help, with("reason", "memory")),
      add_counter(r, "sessiond_cache_overload_rejections_total",
                  "Cache reads refused with 503: cache.max_waiters on one key or cache.max_loads",
                  l),
      metrics::BuildHistogram()
          .Name("sessiond_cache_load_duration_seconds")
          .Help("Loader query latency, successful or not")
          .Register(r)
          .Add(l, buckets),
      add_gauge(r, "sessiond_cache_near_entries", "Entries in this node's near cache", l)});
}

} // namespace

cache_metrics::cache_metrics(metrics::Registry& registry,
                             const std::vector<std::string>& namespaces)
    : degraded_(
          add_gauge(registry, "sessiond_cache_degraded",
                    "1 while the cache's Redis is unreachable: reads go to the loaders, writes "
                    "are skipped",
                    {})),
      subscribed_(add_gauge(registry, "sessiond_cache_invalidation_subscribed",
                            "1 while this node is subscribed to the cache's invalidation channel",
                            {})),
      redis_memory_ratio_(add_gauge(registry, "sessiond_cache_redis_memory_used_ratio",
                                    "The cache Redis' used memory over maxmemory (0: no limit)",
                                    {})) {
  for (const auto& ns : namespaces)
    namespaces_[ns] = meters_of(registry, ns);
}

cache_meters* cache_metrics::of(const std::string& ns) {
  auto it = namespaces_.find(ns);
  return it == namespaces_.end() ? nullptr : it->second.get();
}

} // namespace sessiond::cache
