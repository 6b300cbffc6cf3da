// Test support for the job queue: a node with queue settings, a clock tests move from any thread,
// JSON helpers over the HTTP client, and a webhook receiver (sessiond's own HTTP server) whose
// answers a test sets and whose calls it counts.
#pragma once

#include "adapters/http/server.hpp"
#include "support.hpp"

#include <nlohmann/json.hpp>

#include <atomic>
#include <functional>
#include <mutex>
#include <vector>

namespace sessiond::test {

using json = nlohmann::json;

/// A clock the test moves while node threads read it.
class shared_clock : public model::clock {
public:
  explicit shared_clock(std::int64_t start_ms) : now_(start_ms) {}
  std::int64_t now_ms() const override { return now_.load(); }
  void advance_ms(std::int64_t d) { now_ += d; }

private:
  std::atomic<std::int64_t> now_;
};

/// A started node; stopped (gracefully) when it goes out of scope.
struct queue_node {
  app::node node;
  std::uint16_t port;
  explicit queue_node(config::config c, const model::clock& clk = model::system_clock())
      : node(std::move(c), clk), port(node.start()) {
    REQUIRE(eventually([&] { return node.stats().redis_up; }));
  }
};

/// A named queue's settings with a handler for `type` (noop, or webhook to `url`).
inline config::queue_settings& with_queue(config::config& c, const std::string& q,
                                          const std::string& type = "",
                                          const std::string& kind = "",
                                          const std::string& url = "") {
  auto& s = c.queues.named[q];
  s = c.queues.defaults;
  if (!type.empty()) {
    config::queue_handler h;
    h.kind = kind;
    h.url = url;
    s.handlers[type] = h;
  }
  return s;
}

inline reply post_json(client& c, const std::string& path, const json& body) {
  return c.call(boost::beast::http::verb::post, path, body.dump());
}

inline reply post_empty(client& c, const std::string& path) {
  return c.call(boost::beast::http::verb::post, path);
}

inline json body_of(const reply& r) {
  auto j = json::parse(r.body, nullptr, false);
  return j.is_discarded() ? json() : j;
}

/// Enqueues one job and returns its id (the test fails on anything but 201).
inline std::string enqueue(client& c, const std::string& q, json job) {
  if (!job.contains("payload"))
    job["payload"] = json::object();
  auto r = post_json(c, "/v1/queues/" + q + "/jobs", job);
  REQUIRE(r.status == 201);
  return body_of(r)["id"].get<std::string>();
}

/// The jobs of one lease call.
inline json lease(client& c, const std::string& q, json req = json::object()) {
  auto r = post_json(c, "/v1/queues/" + q + "/lease", req);
  REQUIRE(r.status == 200);
  return body_of(r)["jobs"];
}

inline json job_of(client& c, const std::string& q, const std::string& id) {
  auto r = c.get("/v1/queues/" + q + "/jobs/" + id);
  REQUIRE(r.status == 200);
  return body_of(r);
}

inline json counts_of(client& c, const std::string& q) {
  auto r = c.get("/v1/queues/" + q);
  REQUIRE(r.status == 200);
  return body_of(r);
}

/// An HTTP server standing in for a job's webhook: records each call and answers with
/// `status` (200 unless the test changes it).
class webhook_receiver {
public:
  webhook_receiver() {
    http::server_options o;
    o.port = 0;
    server_ = std::make_unique<http::server>(
        threads_.io, o, [this](http::request&& req, http::responder_ptr res) {
          {
            std::lock_guard<std::mutex> guard{mtx_};
            bodies_.push_back(req.body);
          }
          calls_++;
          http::response out;
          out.status = status_.load();
          out.body = out.status < 300 ? R"({"ok":true})" : R"({"error":"down"})";
          if (delay_ms_.load() > 0)
            std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms_.load()));
          res->send(std::move(out));
        });
    port_ = server_->start();
  }
  ~webhook_receiver() { server_.reset(); }

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/hook"; }
  void answer(unsigned status) { status_ = status; }
  void delay(int ms) { delay_ms_ = ms; }
  int calls() const { return calls_.load(); }
  std::vector<json> bodies() const {
    std::lock_guard<std::mutex> guard{mtx_};
    std::vector<json> out;
    for (const auto& b : bodies_)
      out.push_back(json::parse(b, nullptr, false));
    return out;
  }

private:
  io_threads threads_;
  std::unique_ptr<http::server> server_;
  std::uint16_t port_ = 0;
  std::atomic<unsigned> status_{200};
  std::atomic<int> delay_ms_{0};
  std::atomic<int> calls_{0};
  mutable std::mutex mtx_;
  std::vector<std::string> bodies_;
};

} // namespace sessiond::test
