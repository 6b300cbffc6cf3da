// The three metric kinds (Counter, Gauge, Histogram), updated lock-free from any thread, and
// the snapshot types (MetricFamily, ClientMetric) that a registry collects for exposition.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

// Public names here are spelled as prometheus-cpp 1.x spells them (CamelCase classes and
// methods), not in our snake_case, so that prometheus-cpp can replace this module without
// touching call sites. Every public member exists in prometheus-cpp with the same meaning.
// Our own helpers (detail::, free functions) keep the house snake_case.
namespace sessiond::metrics {

enum class MetricType { Counter, Gauge, Histogram };

/// One collected metric: its labels (constant labels first) and its value(s) at collection.
struct ClientMetric {
  struct Label {
    std::string name;
    std::string value;
  };
  std::vector<Label> label;

  struct Counter {
    double value = 0.0;
  };
  Counter counter;

  struct Gauge {
    double value = 0.0;
  };
  Gauge gauge;

  struct Bucket {
    std::uint64_t cumulative_count = 0;
    double upper_bound = 0.0;
  };
  struct Histogram {
    std::uint64_t sample_count = 0;
    double sample_sum = 0.0;
    std::vector<Bucket> bucket; ///< cumulative, ascending, the last one is +Inf
  };
  Histogram histogram;

  std::int64_t timestamp_ms = 0; ///< 0: none written (we never set one)
};

/// One collected family: what the text format writes under one `# HELP` / `# TYPE` pair.
struct MetricFamily {
  std::string name;
  std::string help;
  MetricType type = MetricType::Counter;
  std::vector<ClientMetric> metric;
};

namespace detail {

/// A double kept as its bit pattern in an atomic<uint64_t>, which is lock-free everywhere we
/// build (std::atomic<double>::fetch_add is C++20). Relaxed ordering: a metric orders nothing.
class atomic_double {
public:
  explicit atomic_double(double v = 0.0);
  double load() const;
  void store(double v);
  void add(double v); ///< CAS loop; exact while the running sum stays exactly representable

private:
  std::atomic<std::uint64_t> bits_;
};

} // namespace detail

/// Monotonic counter. Increment() is one relaxed fetch_add on an integer; Increment(v) adds to
/// a separate double by CAS. Value() is their sum, so whole-number counts stay exact up to 2^64
/// while fractional increments (CPU seconds) are still possible.
class alignas(64) Counter { // own cache line: two hot counters never share one
public:
  static constexpr MetricType metric_type = MetricType::Counter;

  Counter() = default;
  void Increment();
  /// Adds `value`; a negative value or NaN is ignored (a counter never goes down), as in
  /// prometheus-cpp.
  void Increment(double value);
  double Value() const;
  ClientMetric Collect() const;

private:
  std::atomic<std::uint64_t> increments_{0}; ///< calls of Increment()
  detail::atomic_double added_;              ///< sum of Increment(value)
};

/// A value that goes up and down. Every update is one atomic store or CAS loop.
class alignas(64) Gauge {
public:
  static constexpr MetricType metric_type = MetricType::Gauge;

  Gauge() = default;
  explicit Gauge(double value);
  void Increment();
  void Increment(double value);
  void Decrement();
  void Decrement(double value);
  void Set(double value);
  /// Sets the gauge to the current Unix time in whole seconds, as prometheus-cpp does.
  void SetToCurrentTime();
  double Value() const;
  ClientMetric Collect() const;

private:
  detail::atomic_double value_;
};

/// Counts observations into buckets `value <= bound` plus an implicit +Inf bucket, and keeps
/// their sum. Observe() is a binary search, one fetch_add on a bucket and one CAS on the sum.
/// Collect() derives the count from the buckets, so `_count` always equals the +Inf bucket;
/// `_sum` read during concurrent Observe() calls may include an observation whose bucket was
/// not yet counted (or the reverse): off by at most the observations in flight.
class Histogram {
public:
  using BucketBoundaries = std::vector<double>;
  static constexpr MetricType metric_type = MetricType::Histogram;

  /// Throws std::invalid_argument unless the bounds are strictly increasing and not NaN. A
  /// last bound of +Inf is dropped (the +Inf bucket is always there).
  explicit Histogram(const BucketBoundaries& buckets);
  explicit Histogram(BucketBoundaries&& buckets);
  /// NaN lands in the +Inf bucket (and makes the sum NaN), as in the Go client.
  void Observe(double value);
  /// Adds pre-bucketed observations: one (non-cumulative) increment per bound plus one for
  /// +Inf. Throws std::invalid_argument when the size is not bounds + 1.
  void ObserveMultiple(const std::vector<double>& bucket_increments, double sum_of_values);
  ClientMetric Collect() const;

private:
  const BucketBoundaries bucket_boundaries_;
  /// Per bucket, not cumulative (one fetch_add per Observe); the last one is +Inf.
  std::unique_ptr<std::atomic<std::uint64_t>[]> bucket_counts_;
  detail::atomic_double sum_;
};

} // namespace sessiond::metrics
