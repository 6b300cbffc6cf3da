// Request metrics of the HTTP API (see metrics.hpp).
#include "api/metrics.hpp"

#include "adapters/metrics/metric.hpp"

#include <algorithm>

namespace sessiond::api {

namespace {

const char* method_name(http::method m) {
  switch (m) {
  case http::method::get:
    return "GET";
  case http::method::head:
    return "HEAD";
  case http::method::put:
    return "PUT";
  case http::method::post:
    return "POST";
  case http::method::patch:
    return "PATCH";
  case http::method::del:
    return "DELETE";
  case http::method::options:
    return "OPTIONS";
  default:
    return "OTHER";
  }
}

const metrics::Histogram::BucketBoundaries latency_buckets = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5};

/// The route template of a path below /v1/queues (given without that prefix).
route_id classify_queue(std::string_view rest) {
  if (rest.empty() || rest == "/")
    return route_id::queues;
  if (rest.front() != '/')
    return route_id::other;
  rest.remove_prefix(1);
  auto slash = rest.find('/');
  if (slash == std::string_view::npos)
    return route_id::queue;
  auto tail = rest.substr(slash + 1);
  if (tail == "jobs")
    return route_id::queue_jobs;
  if (tail == "jobs:batch")
    return route_id::queue_jobs_batch;
  if (tail == "jobs:complete")
    return route_id::queue_jobs_complete;
  if (tail == "lease")
    return route_id::queue_lease;
  if (tail == "pause" || tail == "resume")
    return route_id::queue_pause;
  if (tail.rfind("jobs/", 0) == 0)
    return tail.find('/', 5) == std::string_view::npos ? route_id::queue_job
                                                       : route_id::queue_job_action;
  return route_id::other;
}

} // namespace

route_id classify(std::string_view path) {
  path = path.substr(0, path.find('?'));
  if (path.rfind("/v1/sessions/", 0) == 0)
    return route_id::session;
  if (path.rfind("/v1/users/", 0) == 0)
    return route_id::user_sessions;
  if (path == "/healthz")
    return route_id::healthz;
  if (path == "/readyz")
    return route_id::readyz;
  if (path == "/metrics")
    return route_id::metrics;
  if (path == "/v1/status")
    return route_id::status;
  if (path == "/v1/admin/sync")
    return route_id::admin_sync;
  if (path == "/v1/admin/sync/rejected")
    return route_id::admin_sync_rejected;
  if (path == "/v1/admin/sync/rejected/requeue")
    return route_id::admin_sync_requeue;
  if (path == "/v1/admin/retention")
    return route_id::admin_retention;
  if (path == "/")
    return route_id::status_page;
  if (path.rfind("/v1/queues", 0) == 0)
    return classify_queue(path.substr(10));
  return route_id::other;
}

const char* to_string(route_id r) {
  static const char* names[] = {"/v1/sessions/{id}",
                                "/v1/users/{uid}/sessions",
                                "/healthz",
                                "/readyz",
                                "/metrics",
                                "/v1/status",
                                "/v1/admin/sync",
                                "/v1/admin/sync/rejected",
                                "/v1/admin/sync/rejected/requeue",
                                "/v1/admin/retention",
                                "/",
                                "/v1/queues",
                                "/v1/queues/{q}",
                                "/v1/queues/{q}/jobs",
                                "/v1/queues/{q}/jobs:batch",
                                "/v1/queues/{q}/jobs:complete",
                                "/v1/queues/{q}/lease",
                                "/v1/queues/{q}/pause|resume",
                                "/v1/queues/{q}/jobs/{id}",
                                "/v1/queues/{q}/jobs/{id}/{action}",
                                "other"};
  return names[static_cast<std::size_t>(r)];
}

api_metrics::api_metrics(metrics::Registry& registry)
    : requests_(metrics::BuildCounter()
                    .Name("sessiond_http_requests_total")
                    .Help("HTTP requests answered, by route template, method and status.")
                    .Register(registry)),
      latency_(metrics::BuildHistogram()
                   .Name("sessiond_http_request_duration_seconds")
                   .Help("Time from a parsed request to its answer, by route template and method.")
                   .Register(registry)),
      rejections_(metrics::BuildCounter()
                      .Name("sessiond_backpressure_rejections_total")
                      .Help("Requests answered 503 at once because their shard was at "
                            "sessions.max_in_flight.")
                      .Register(registry)
                      .Add({})) {}

metrics::Counter& api_metrics::counter(route_id r, http::method m, unsigned status) {
  auto it = std::find(known_statuses.begin(), known_statuses.end(), status);
  if (it == known_statuses.end())
    return requests_.Add(
        {{"route", to_string(r)}, {"method", method_name(m)}, {"status", std::to_string(status)}});
  auto i = (static_cast<std::size_t>(r) * method_count + static_cast<std::size_t>(m)) *
               known_statuses.size() +
           static_cast<std::size_t>(it - known_statuses.begin());
  auto* c = counters_[i].load(std::memory_order_acquire);
  if (c == nullptr) {
    c = &requests_.Add(
        {{"route", to_string(r)}, {"method", method_name(m)}, {"status", std::to_string(status)}});
    counters_[i].store(c, std::memory_order_release);
  }
  return *c;
}

metrics::Histogram& api_metrics::histogram(route_id r, http::method m) {
  auto i = static_cast<std::size_t>(r) * method_count + static_cast<std::size_t>(m);
  auto* h = histograms_[i].load(std::memory_order_acquire);
  if (h == nullptr) {
    h = &latency_.Add({{"route", to_string(r)}, {"method", method_name(m)}}, latency_buckets);
    histograms_[i].store(h, std::memory_order_release);
  }
  return *h;
}

void api_metrics::observe(route_id route, http::method verb, unsigned status, double seconds) {
  counter(route, verb, status).Increment();
  histogram(route, verb).Observe(seconds);
}

metered_responder::metered_responder(http::responder_ptr inner, api_metrics& m, route_id r,
                                     http::method verb)
    : inner_(std::move(inner)),
      metrics_(m),
      route_(r),
      verb_(verb),
      start_(std::chrono::steady_clock::now()) {}

metered_responder::~metered_responder() {
  // Dropped without an answer: the inner responder answers 503; count it as such.
  if (!sent_)
    metrics_.observe(
        route_, verb_, 503,
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count());
}

void metered_responder::send(http::response&& r) {
  if (sent_)
    return;
  sent_ = true;
  metrics_.observe(
      route_, verb_, r.status,
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count());
  inner_->send(std::move(r));
}

} // namespace sessiond::api
