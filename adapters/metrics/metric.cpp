// Lock-free updates of Counter, Gauge and Histogram, and their snapshots for collection.
#include "adapters/metrics/metric.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <utility>

namespace sessiond::metrics {

namespace detail {

namespace {

static_assert(sizeof(double) == sizeof(std::uint64_t));
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);

std::uint64_t to_bits(double v) {
  std::uint64_t b;
  std::memcpy(&b, &v, sizeof b);
  return b;
}

double from_bits(std::uint64_t b) {
  double v;
  std::memcpy(&v, &b, sizeof v);
  return v;
}

} // namespace

atomic_double::atomic_double(double v) : bits_(to_bits(v)) {}

double atomic_double::load() const {
  return from_bits(bits_.load(std::memory_order_relaxed));
}

void atomic_double::store(double v) {
  bits_.store(to_bits(v), std::memory_order_relaxed);
}

void atomic_double::add(double v) {
  auto expected = bits_.load(std::memory_order_relaxed);
  // On failure compare_exchange_weak reloads `expected`; the loop retries only while another
  // thread changed the value in between.
  while (!bits_.compare_exchange_weak(expected, to_bits(from_bits(expected) + v),
                                      std::memory_order_relaxed)) {
  }
}

} // namespace detail

// --- Counter -------------------------------------------------------------------------------

void Counter::Increment() {
  increments_.fetch_add(1, std::memory_order_relaxed);
}

void Counter::Increment(double value) {
  if (!(value >= 0.0)) // also false for NaN
    return;
  added_.add(value);
}

double Counter::Value() const {
  return static_cast<double>(increments_.load(std::memory_order_relaxed)) + added_.load();
}

ClientMetric Counter::Collect() const {
  ClientMetric m;
  m.counter.value = Value();
  return m;
}

// --- Gauge ---------------------------------------------------------------------------------

Gauge::Gauge(double value) : value_(value) {}

void Gauge::Increment() {
  value_.add(1.0);
}

void Gauge::Increment(double value) {
  value_.add(value);
}

void Gauge::Decrement() {
  value_.add(-1.0);
}

void Gauge::Decrement(double value) {
  value_.add(-value);
}

void Gauge::Set(double value) {
  value_.store(value);
}

void Gauge::SetToCurrentTime() {
  auto now = std::chrono::system_clock::now().time_since_epoch();
  Set(static_cast<double>(std::chrono::duration_cast<std::chrono::seconds>(now).count()));
}

double Gauge::Value() const {
  return value_.load();
}

ClientMetric Gauge::Collect() const {
  ClientMetric m;
  m.gauge.value = Value();
  return m;
}

// --- Histogram -----------------------------------------------------------------------------

namespace {

Histogram::BucketBoundaries checked_bounds(Histogram::BucketBoundaries b) {
  if (!b.empty() && std::isinf(b.back()) && b.back() > 0)
    b.pop_back();
  for (std::size_t i = 0; i < b.size(); ++i) {
    if (std::isnan(b[i]))
      throw std::invalid_argument("histogram bucket boundary is NaN");
    if (i > 0 && !(b[i - 1] < b[i]))
      throw std::invalid_argument("histogram bucket boundaries must be strictly increasing");
  }
  return b;
}

} // namespace

Histogram::Histogram(const BucketBoundaries& buckets) : Histogram(BucketBoundaries(buckets)) {}

Histogram::Histogram(BucketBoundaries&& buckets)
    : bucket_boundaries_(checked_bounds(std::move(buckets))),
      bucket_counts_(new std::atomic<std::uint64_t>[bucket_boundaries_.size() + 1]) {
  for (std::size_t i = 0; i <= bucket_boundaries_.size(); ++i)
    bucket_counts_[i].store(0, std::memory_order_relaxed);
}

void Histogram::Observe(double value) {
  // First bound >= value (`le` semantics); NaN compares false everywhere, so send it to +Inf
  // explicitly rather than let lower_bound put it in the first bucket.
  auto index = std::isnan(value)
                   ? bucket_boundaries_.size()
                   : static_cast<std::size_t>(std::lower_bound(bucket_boundaries_.begin(),
                                                               bucket_boundaries_.end(), value) -
                                              bucket_boundaries_.begin());
  bucket_counts_[index].fetch_add(1, std::memory_order_relaxed);
  sum_.add(value);
}

void Histogram::ObserveMultiple(const std::vector<double>& bucket_increments,
                                double sum_of_values) {
  if (bucket_increments.size() != bucket_boundaries_.size() + 1)
    throw std::invalid_argument("bucket_increments must hold one value per bucket and +Inf");
  for (std::size_t i = 0; i < bucket_increments.size(); ++i) {
    if (bucket_increments[i] > 0)
      bucket_counts_[i].fetch_add(static_cast<std::uint64_t>(bucket_increments[i]),
                                  std::memory_order_relaxed);
  }
  sum_.add(sum_of_values);
}

ClientMetric Histogram::Collect() const {
  ClientMetric m;
  auto& h = m.histogram;
  h.bucket.reserve(bucket_boundaries_.size() + 1);
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i <= bucket_boundaries_.size(); ++i) {
    cumulative += bucket_counts_[i].load(std::memory_order_relaxed);
    double bound = i < bucket_boundaries_.size() ? bucket_boundaries_[i]
                                                 : std::numeric_limits<double>::infinity();
    h.bucket.push_back({cumulative, bound});
  }
  h.sample_count = cumulative;
  h.sample_sum = sum_.load();
  return m;
}

} // namespace sessiond::metrics
