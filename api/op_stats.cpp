// op_stats: power-of-two latency buckets, so a p99 costs a 32-entry scan.
#include "api/op_stats.hpp"

namespace sessiond::api {

namespace {

std::size_t bucket_of(std::uint64_t micros) {
  std::size_t i = 0;
  while (micros > 0 && i + 1 < op_stats::bucket_count) {
    micros >>= 1;
    ++i;
  }
  return i;
}

} // namespace

void op_stats::record(bool successful_write, std::uint64_t micros) {
  ops_.fetch_add(1, std::memory_order_relaxed);
  if (successful_write)
    writes_.fetch_add(1, std::memory_order_relaxed);
  micros_.fetch_add(micros, std::memory_order_relaxed);
  buckets_[bucket_of(micros)].fetch_add(1, std::memory_order_relaxed);
}

op_stats::totals op_stats::read() const {
  totals t;
  t.ops = ops_.load(std::memory_order_relaxed);
  t.writes = writes_.load(std::memory_order_relaxed);
  t.micros = micros_.load(std::memory_order_relaxed);
  for (std::size_t i = 0; i < bucket_count; ++i)
    t.buckets[i] = buckets_[i].load(std::memory_order_relaxed);
  return t;
}

op_window between(const op_stats::totals& older, const op_stats::totals& newer, double seconds) {
  op_window w;
  auto ops = newer.ops - older.ops;
  if (seconds > 0) {
    w.ops_per_s = static_cast<double>(ops) / seconds;
    w.writes_per_s = static_cast<double>(newer.writes - older.writes) / seconds;
  }
  if (ops == 0)
    return w;
  w.latency_avg_ms =
      static_cast<double>(newer.micros - older.micros) / static_cast<double>(ops) / 1000.0;
  auto rank = (ops * 99 + 99) / 100; // the ceil(0.99 * ops)-th smallest
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < op_stats::bucket_count; ++i) {
    seen += newer.buckets[i] - older.buckets[i];
    if (seen >= rank) {
      w.latency_p99_ms = static_cast<double>(std::uint64_t{1} << i) / 1000.0;
      break;
    }
  }
  return w;
}

} // namespace sessiond::api
