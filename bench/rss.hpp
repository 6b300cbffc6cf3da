// Samples a process' resident set size (VmRSS in /proc/PID/status) once a second.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace sessiond::bench {

struct rss_samples {
  long pid = 0;                  ///< 0 = not sampled
  std::vector<std::uint64_t> kb; ///< one per second, in order
  std::string note;              ///< e.g. "process exited" when sampling stopped early
  std::uint64_t first() const { return kb.empty() ? 0 : kb.front(); }
  std::uint64_t last() const { return kb.empty() ? 0 : kb.back(); }
  std::uint64_t max() const;
};

/// Reads VmRSS of `pid` in KiB; false when the process or the line is gone.
bool read_rss_kb(long pid, std::uint64_t& kb);

/// Samples on its own thread from construction until stop(), plus a last sample at stop().
class rss_sampler {
public:
  explicit rss_sampler(long pid);
  ~rss_sampler();
  rss_samples stop();

private:
  void loop();
  void sample();

  rss_samples samples_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
};

} // namespace sessiond::bench
