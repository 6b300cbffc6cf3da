// RSS sampling of the process under test (--rss-pid), once a second on a thread of its own.
#include "bench/rss.hpp"

#include <algorithm>
#include <fstream>
#include <sstream>

namespace sessiond::bench {

std::uint64_t rss_samples::max() const {
  return kb.empty() ? 0 : *std::max_element(kb.begin(), kb.end());
}

bool read_rss_kb(long pid, std::uint64_t& kb) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.compare(0, 6, "VmRSS:") != 0)
      continue;
    std::istringstream fields(line.substr(6));
    return static_cast<bool>(fields >> kb);
  }
  return false;
}

rss_sampler::rss_sampler(long pid) {
  samples_.pid = pid;
  if (pid > 0)
    thread_ = std::thread([this] { loop(); });
}

rss_sampler::~rss_sampler() {
  stop();
}

void rss_sampler::sample() {
  std::uint64_t kb = 0;
  if (read_rss_kb(samples_.pid, kb))
    samples_.kb.push_back(kb);
  else if (samples_.note.empty())
    samples_.note =
        "process gone or VmRSS unreadable after " + std::to_string(samples_.kb.size()) + " samples";
}

void rss_sampler::loop() {
  std::unique_lock<std::mutex> lock(mutex_);
  auto next = std::chrono::steady_clock::now();
  while (!stopping_) {
    sample();
    next += std::chrono::seconds(1);
    wake_.wait_until(lock, next, [this] { return stopping_; });
  }
  sample();
}

rss_samples rss_sampler::stop() {
  if (thread_.joinable()) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    thread_.join();
  }
  return samples_;
}

} // namespace sessiond::bench
