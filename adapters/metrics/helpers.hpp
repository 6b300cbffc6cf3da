// Small helpers over the registry for the engine's own metrics (snake_case: ours, not part of
// the prometheus-cpp API the registry mirrors).
#pragma once

#include "adapters/metrics/registry.hpp"

#include <cstdint>

namespace sessiond::metrics {

/// The metric `labels` of the counter family `name` (registered on first use; later calls with
/// the same name, help and type return the same family).
Counter& add_counter(Registry& r, const char* name, const char* help, const Labels& labels = {});
/// The same for a gauge.
Gauge& add_gauge(Registry& r, const char* name, const char* help, const Labels& labels = {});

/// A counter that follows a cumulative value kept elsewhere (the Redis client's counts, Redis's
/// INFO): each advance() adds the difference since the last one.
struct counter_follower {
  Counter* counter = nullptr;
  std::uint64_t last = 0;
  /// Adds now - last; when the source restarted (`restarted`, or its value went down) adds
  /// `now` itself, so the counter never goes down. `scale` converts the unit (µs → s).
  void advance(std::uint64_t now, bool restarted = false, double scale = 1.0);
};

} // namespace sessiond::metrics
