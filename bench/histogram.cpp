// Log-linear histogram arithmetic: value -> bucket index -> value range, and percentiles.
#include "bench/histogram.hpp"

#include <algorithm>
#include <cmath>

namespace sessiond::bench {

namespace {

constexpr std::uint64_t sub_count = std::uint64_t{1} << histogram::sub_bits;
// Values below 2 * sub_count map one to one; above, each octave adds sub_count buckets.
constexpr std::size_t bucket_count = (histogram::value_bits - histogram::sub_bits + 1) * sub_count;

unsigned msb(std::uint64_t v) {
  return 63u - static_cast<unsigned>(__builtin_clzll(v));
}

} // namespace

histogram::histogram() : counts_(bucket_count, 0) {}

std::size_t histogram::index_of(std::uint64_t value) {
  value = std::min(value, max_value);
  if (value < 2 * sub_count)
    return static_cast<std::size_t>(value);
  unsigned shift = msb(value) - sub_bits; // >= 1; value >> shift is in [sub_count, 2*sub_count)
  return static_cast<std::size_t>(shift * sub_count + (value >> shift));
}

std::uint64_t histogram::lowest_of(std::size_t index) {
  if (index < 2 * sub_count)
    return index;
  std::uint64_t shift = index / sub_count - 1;
  std::uint64_t mantissa = index % sub_count + sub_count;
  return mantissa << shift;
}

std::uint64_t histogram::highest_of(std::size_t index) {
  if (index < 2 * sub_count)
    return index;
  std::uint64_t shift = index / sub_count - 1;
  return lowest_of(index) + (std::uint64_t{1} << shift) - 1;
}

void histogram::record(std::uint64_t value) {
  ++counts_[index_of(value)];
  min_ = count_ == 0 ? value : std::min(min_, value);
  max_ = std::max(max_, value);
  sum_ += value;
  ++count_;
}

void histogram::merge(const histogram& other) {
  if (other.count_ == 0)
    return;
  for (std::size_t i = 0; i < counts_.size(); ++i)
    counts_[i] += other.counts_[i];
  min_ = count_ == 0 ? other.min_ : std::min(min_, other.min_);
  max_ = std::max(max_, other.max_);
  sum_ += other.sum_;
  count_ += other.count_;
}

double histogram::mean() const {
  return count_ ? static_cast<double>(sum_ / count_) : 0.0;
}

std::uint64_t histogram::percentile(double pct) const {
  if (count_ == 0)
    return 0;
  pct = std::clamp(pct, 0.0, 100.0);
  auto wanted = static_cast<std::uint64_t>(std::ceil(pct / 100.0 * static_cast<double>(count_)));
  wanted = std::max<std::uint64_t>(wanted, 1);
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < counts_.size(); ++i) {
    seen += counts_[i];
    if (seen >= wanted)
      return std::min(std::max(highest_of(i), min_), max_);
  }
  return max_;
}

} // namespace sessiond::bench
