// Prometheus text exposition format 0.0.4: what GET /metrics answers.
#pragma once

#include "adapters/metrics/metric.hpp"

#include <iosfwd>
#include <string>
#include <string_view>
#include <vector>

namespace sessiond::metrics {

class Registry;

/// The Content-Type of a text-format /metrics answer.
inline constexpr std::string_view text_content_type = "text/plain; version=0.0.4; charset=utf-8";

/// Writes families as text format 0.0.4: per family `# HELP` and `# TYPE` once, then its
/// samples; a histogram as cumulative `_bucket{…,le="…"}` lines ending with le="+Inf", then
/// `_sum` and `_count`. Spelled like prometheus-cpp's TextSerializer so it can be swapped in.
class TextSerializer {
public:
  std::string Serialize(const std::vector<MetricFamily>& metrics) const;
  void Serialize(std::ostream& out, const std::vector<MetricFamily>& metrics) const;
};

/// The whole registry as text format 0.0.4 (Collect, then TextSerializer).
std::string serialize(const Registry& registry);

/// A sample value as Prometheus clients write it: integers up to 2^53 in plain digits, other
/// finite values in the shortest form that reads back to the same double, `+Inf`, `-Inf`,
/// `NaN`. Also used for `le` bounds.
std::string format_value(double value);

} // namespace sessiond::metrics
