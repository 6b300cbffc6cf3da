// Session operation counts and latencies for GET /v1/status: writes/s, average and p99 latency
// over a recent window. Lock-free on the request path (relaxed atomic adds); the status handler
// diffs two snapshots.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

namespace sessiond::api {

class op_stats {
public:
  /// Buckets of latency: bucket i holds [2^(i-1), 2^i) microseconds (bucket 0: under 1 µs).
  static constexpr std::size_t bucket_count = 32;

  struct totals {
    std::uint64_t ops = 0;
    std::uint64_t writes = 0; ///< successful writes (PUT, PATCH, DELETE, revoke all)
    std::uint64_t micros = 0; ///< sum of latencies
    std::array<std::uint64_t, bucket_count> buckets{};
  };

  /// One answered session operation (any thread).
  void record(bool successful_write, std::uint64_t micros);
  totals read() const;

private:
  std::atomic<std::uint64_t> ops_{0}, writes_{0}, micros_{0};
  std::array<std::atomic<std::uint64_t>, bucket_count> buckets_{};
};

/// Rates and latencies between two snapshots `seconds` apart.
struct op_window {
  double ops_per_s = 0;
  double writes_per_s = 0;
  double latency_avg_ms = 0;
  double latency_p99_ms = 0; ///< upper bound of the bucket holding the 99th percentile
};
op_window between(const op_stats::totals& older, const op_stats::totals& newer, double seconds);

} // namespace sessiond::api
