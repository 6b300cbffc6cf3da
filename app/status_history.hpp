// The last 15 minutes of the node's own figures, for the charts of the status page: one point
// every 10 s (requests/s, session p99, sync backlog, and per queue its depth and failures/s),
// kept in memory only. Thread-safe.
#pragma once

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <string>

namespace sessiond::app {

struct history_point {
  std::int64_t at_ms = 0;
  double requests_per_s = 0;
  double p99_ms = 0;
  std::int64_t sync_backlog = -1; ///< -1 unknown
  struct queue_figures {
    std::int64_t depth = 0; ///< waiting + delayed + active
    double failed_per_s = 0;
  };
  std::map<std::string, queue_figures> queues;
};

class status_history {
public:
  static constexpr std::chrono::seconds step{10};
  static constexpr std::size_t points = 90; ///< 15 minutes

  void record(history_point p);
  /// {"step_s":10,"points":[{"t","requests_per_s","p99_ms","sync_backlog","queues":{…}}…]},
  /// oldest first.
  nlohmann::json json() const;

private:
  mutable std::mutex mtx_;
  std::deque<history_point> points_;
};

} // namespace sessiond::app
