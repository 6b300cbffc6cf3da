// Latency histogram in the HDR style: log-linear buckets, <1% relative error, fixed memory.
#pragma once

#include <cstdint>
#include <vector>

namespace sessiond::bench {

/// Records non-negative integer values (the bench records nanoseconds) in buckets that are
/// linear within each power of two: 128 sub-buckets per octave, so a bucket is at most
/// 1/128 (0.78%) of its values wide. Values above `max_value` (about 2.4 h in ns) land in
/// the top bucket; the exact min, max and sum are kept on the side. ~36 KiB each.
/// Not thread-safe: each worker thread owns one and they are merged afterwards.
class histogram {
public:
  static constexpr unsigned sub_bits = 7;    ///< 2^7 = 128 linear sub-buckets per octave
  static constexpr unsigned value_bits = 43; ///< values below 2^43
  static constexpr std::uint64_t max_value = (std::uint64_t{1} << value_bits) - 1;

  histogram();

  void record(std::uint64_t value);
  void merge(const histogram& other);

  std::uint64_t count() const { return count_; }
  std::uint64_t min() const { return count_ ? min_ : 0; }
  std::uint64_t max() const { return max_; }
  double mean() const;

  /// The smallest recorded value v such that `pct` percent of values are <= v, reported as
  /// the highest value of its bucket (as HdrHistogram does) and never above max().
  std::uint64_t percentile(double pct) const;

  /// Bucket arithmetic, public for checks.
  static std::size_t index_of(std::uint64_t value);
  static std::uint64_t lowest_of(std::size_t index);
  static std::uint64_t highest_of(std::size_t index);

private:
  std::vector<std::uint64_t> counts_;
  std::uint64_t count_ = 0;
  std::uint64_t min_ = 0;
  std::uint64_t max_ = 0;
  long double sum_ = 0;
};

} // namespace sessiond::bench
