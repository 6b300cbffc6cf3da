// Engine metrics of the HTTP API: requests by route, method and status, latency histograms, and
// backpressure rejections. After the first request of a kind, recording takes no lock.
#pragma once

#include "adapters/http/server.hpp"
#include "adapters/metrics/registry.hpp"

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <string_view>

namespace sessiond::api {

/// The route templates that label request metrics (never raw paths: ids would explode them).
enum class route_id : std::uint8_t {
  session,
  user_sessions,
  healthz,
  readyz,
  metrics,
  status,
  admin_sync,
  admin_sync_rejected,
  admin_sync_requeue,
  admin_retention,
  status_page,
  queues,
  queue,
  queue_jobs,
  queue_jobs_batch,
  queue_jobs_complete,
  queue_lease,
  queue_pause,
  queue_job,
  queue_job_action,
  other
};
constexpr std::size_t route_count = 21;
route_id classify(std::string_view path);
const char* to_string(route_id r);

class api_metrics {
public:
  explicit api_metrics(metrics::Registry& registry);
  void observe(route_id route, http::method verb, unsigned status, double seconds);
  void rejected() { rejections_.Increment(); }

private:
  static constexpr std::size_t method_count = 8;
  static constexpr std::array<unsigned, 21> known_statuses = {200, 201, 204, 304, 400, 401, 403,
                                                              404, 405, 408, 409, 410, 412, 413,
                                                              415, 422, 429, 431, 500, 501, 503};
  metrics::Counter& counter(route_id r, http::method m, unsigned status);
  metrics::Histogram& histogram(route_id r, http::method m);

  metrics::Family<metrics::Counter>& requests_;
  metrics::Family<metrics::Histogram>& latency_;
  metrics::Counter& rejections_;
  std::array<std::atomic<metrics::Counter*>, route_count * method_count * known_statuses.size()>
      counters_{};
  std::array<std::atomic<metrics::Histogram*>, route_count * method_count> histograms_{};
};

/// Wraps a responder so that its answer is counted and timed.
class metered_responder : public http::responder {
public:
  metered_responder(http::responder_ptr inner, api_metrics& m, route_id r, http::method verb);
  ~metered_responder() override;
  void send(http::response&& r) override;

private:
  http::responder_ptr inner_;
  api_metrics& metrics_;
  route_id route_;
  http::method verb_;
  std::chrono::steady_clock::time_point start_;
  bool sent_ = false;
};

} // namespace sessiond::api
