// The status page's 15-minute history (see status_history.hpp).
#include "app/status_history.hpp"

namespace sessiond::app {

void status_history::record(history_point p) {
  std::lock_guard<std::mutex> guard{mtx_};
  points_.push_back(std::move(p));
  while (points_.size() > points)
    points_.pop_front();
}

nlohmann::json status_history::json() const {
  auto list = nlohmann::json::array();
  std::lock_guard<std::mutex> guard{mtx_};
  for (const auto& p : points_) {
    auto queues = nlohmann::json::object();
    for (const auto& [name, q] : p.queues)
      queues[name] = {{"depth", q.depth}, {"failed_per_s", q.failed_per_s}};
    list.push_back(
        {{"t", p.at_ms},
         {"requests_per_s", p.requests_per_s},
         {"p99_ms", p.p99_ms},
         {"sync_backlog", p.sync_backlog < 0 ? nlohmann::json() : nlohmann::json(p.sync_backlog)},
         {"queues", queues}});
  }
  return {{"step_s", step.count()}, {"points", list}};
}

} // namespace sessiond::app
