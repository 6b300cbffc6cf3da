// add_counter, add_gauge and counter_follower (see helpers.hpp).
#include "adapters/metrics/helpers.hpp"

#include "adapters/metrics/metric.hpp"

namespace sessiond::metrics {

Counter& add_counter(Registry& r, const char* name, const char* help, const Labels& labels) {
  return BuildCounter().Name(name).Help(help).Register(r).Add(labels);
}

Gauge& add_gauge(Registry& r, const char* name, const char* help, const Labels& labels) {
  return BuildGauge().Name(name).Help(help).Register(r).Add(labels);
}

void counter_follower::advance(std::uint64_t now, bool restarted, double scale) {
  std::uint64_t delta = restarted || now < last ? now : now - last;
  if (delta > 0)
    counter->Increment(static_cast<double>(delta) * scale);
  last = now;
}

} // namespace sessiond::metrics
