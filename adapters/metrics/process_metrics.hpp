// The standard process_* metrics (CPU, memory, file descriptors, start time) read from /proc
// into a registry on demand, e.g. right before each scrape.
#pragma once

#include "adapters/metrics/registry.hpp"

#include <mutex>
#include <string>

namespace sessiond::metrics {

enum class errc {
  ok = 0,
  unreadable, ///< a /proc file or directory could not be read
  malformed,  ///< a /proc file did not have the expected fields
};
const char* to_string(errc e);

/// Registers, in `registry`, the process metrics every Prometheus client exports, under
/// their standard names and base units:
///   process_cpu_seconds_total (counter), process_resident_memory_bytes,
///   process_virtual_memory_bytes, process_open_fds, process_max_fds (+Inf when unlimited),
///   process_start_time_seconds (Unix time).
/// Registering twice on one registry is fine (Merge gives the same families).
class process_metrics {
public:
  /// `proc_root` is where procfs is mounted; tests point it at a fake tree.
  explicit process_metrics(Registry& registry, std::string proc_root = "/proc");

  /// Reads /proc/self/stat, /proc/stat, /proc/self/limits and /proc/self/fd and updates the
  /// metrics. Any thread; calls are serialized. On an error the metrics whose source was read
  /// are still updated, the others keep their last value, and the first error is returned.
  errc update();

private:
  errc update_stat();
  errc update_limits();
  errc update_fds();

  const std::string proc_root_;
  std::mutex mutex_; ///< one update() at a time (the CPU counter is advanced by difference)
  Counter& cpu_seconds_;
  Gauge& resident_bytes_;
  Gauge& virtual_bytes_;
  Gauge& open_fds_;
  Gauge& max_fds_;
  Gauge& start_time_seconds_;
};

} // namespace sessiond::metrics
