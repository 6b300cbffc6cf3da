// The cache's Prometheus metrics, per namespace (label `namespace`), registered at start-up for
// every configured namespace (docs/operations.md, "Cache signals").
#pragma once

#include "adapters/metrics/registry.hpp"

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace sessiond::cache {

/// One namespace's meters (references into the registry; valid for the registry's life).
struct cache_meters {
  metrics::Counter &hits, &near_hits, &misses, &loads, &load_errors, &stale_served,
      &single_flight_waits, &early_refreshes, &invalidations, &skipped_redis_down, &skipped_memory,
      &overload;
  metrics::Histogram& load_duration;
  metrics::Gauge& near_entries;
};

class cache_metrics {
public:
  cache_metrics(metrics::Registry& registry, const std::vector<std::string>& namespaces);
  /// The meters of a configured namespace; nullptr for another name.
  cache_meters* of(const std::string& ns);
  /// 1 while the cache's Redis is unreachable (reads go to the loaders, writes are skipped).
  metrics::Gauge& degraded() { return degraded_; }
  /// 1 while the invalidation subscription is up.
  metrics::Gauge& subscribed() { return subscribed_; }
  /// The cache Redis' used memory over its maxmemory as last read (0: no limit known).
  metrics::Gauge& redis_memory_ratio() { return redis_memory_ratio_; }

private:
  metrics::Gauge& degraded_;
  metrics::Gauge& subscribed_;
  metrics::Gauge& redis_memory_ratio_;
  std::map<std::string, std::unique_ptr<cache_meters>> namespaces_;
};

} // namespace sessiond::cache
