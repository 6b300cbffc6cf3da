// Text exposition format 0.0.4: escaping, number formatting and the sample lines.
#include "adapters/metrics/text_serializer.hpp"

#include "adapters/metrics/registry.hpp"

#include <charconv>
#include <cmath>
#include <cstdint>
#include <ostream>

namespace sessiond::metrics {

namespace {

/// HELP text escapes backslash and newline; label values also escape the double quote.
void write_escaped(std::string& out, std::string_view s, bool quote) {
  for (char c : s) {
    switch (c) {
    case '\\':
      out += "\\\\";
      break;
    case '\n':
      out += "\\n";
      break;
    case '"':
      out += quote ? "\\\"" : "\"";
      break;
    default:
      out += c;
    }
  }
}

const char* type_name(MetricType t) {
  switch (t) {
  case MetricType::Counter:
    return "counter";
  case MetricType::Gauge:
    return "gauge";
  case MetricType::Histogram:
    return "histogram";
  }
  return "untyped";
}

/// `{a="1",b="2"}`, with `le` appended when given; nothing at all for no labels.
void write_labels(std::string& out, const std::vector<ClientMetric::Label>& labels,
                  const std::string* le = nullptr) {
  if (labels.empty() && le == nullptr)
    return;
  out += '{';
  const char* sep = "";
  for (const auto& l : labels) {
    out += sep;
    out += l.name;
    out += "=\"";
    write_escaped(out, l.value, true);
    out += '"';
    sep = ",";
  }
  if (le != nullptr) {
    out += sep;
    out += "le=\"";
    out += *le;
    out += '"';
  }
  out += '}';
}

void write_sample(std::string& out, const std::string& name, std::string_view suffix,
                  const ClientMetric& m, const std::string& value,
                  const std::string* le = nullptr) {
  out += name;
  out += suffix;
  write_labels(out, m.label, le);
  out += ' ';
  out += value;
  if (m.timestamp_ms != 0) {
    out += ' ';
    out += std::to_string(m.timestamp_ms);
  }
  out += '\n';
}

void write_histogram(std::string& out, const std::string& name, const ClientMetric& m) {
  for (const auto& b : m.histogram.bucket) {
    auto le = format_value(b.upper_bound);
    write_sample(out, name, "_bucket", m, std::to_string(b.cumulative_count), &le);
  }
  write_sample(out, name, "_sum", m, format_value(m.histogram.sample_sum));
  write_sample(out, name, "_count", m, std::to_string(m.histogram.sample_count));
}

void write_family(std::string& out, const MetricFamily& f) {
  out += "# HELP ";
  out += f.name;
  out += ' ';
  write_escaped(out, f.help, false);
  out += "\n# TYPE ";
  out += f.name;
  out += ' ';
  out += type_name(f.type);
  out += '\n';
  for (const auto& m : f.metric) {
    switch (f.type) {
    case MetricType::Counter:
      write_sample(out, f.name, "", m, format_value(m.counter.value));
      break;
    case MetricType::Gauge:
      write_sample(out, f.name, "", m, format_value(m.gauge.value));
      break;
    case MetricType::Histogram:
      write_histogram(out, f.name, m);
      break;
    }
  }
}

} // namespace

std::string format_value(double value) {
  if (std::isnan(value))
    return "NaN";
  if (std::isinf(value))
    return value > 0 ? "+Inf" : "-Inf";
  constexpr double exact_integers = 9007199254740992.0; // 2^53
  if (value == std::trunc(value) && std::fabs(value) <= exact_integers)
    return std::to_string(static_cast<std::int64_t>(value)); // -0.0 prints "0"
  char buf[32];
  // Shortest round-trip form; to_chars picks fixed or exponent, whichever is shorter.
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value);
  return ec == std::errc{} ? std::string(buf, end) : std::string("NaN");
}

std::string TextSerializer::Serialize(const std::vector<MetricFamily>& metrics) const {
  std::string out;
  for (const auto& f : metrics)
    write_family(out, f);
  return out;
}

void TextSerializer::Serialize(std::ostream& out, const std::vector<MetricFamily>& metrics) const {
  out << Serialize(metrics);
}

std::string serialize(const Registry& registry) {
  return TextSerializer{}.Serialize(registry.Collect());
}

} // namespace sessiond::metrics
