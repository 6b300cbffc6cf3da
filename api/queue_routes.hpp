// The HTTP API v1 of the job queue (/v1/queues…, docs/queue.md): parses and checks each request,
// applies backpressure (in-flight bound, max_length, Redis memory) and runs it on the queue store
// straight from the I/O thread, one script per request; long-poll leases park in lease_waiters.
#pragma once

#include "adapters/http/server.hpp"
#include "adapters/queue/lease_waiters.hpp"
#include "adapters/queue/queue_metrics.hpp"
#include "adapters/queue/store.hpp"
#include "model/queue.hpp"
#include "model/ttl.hpp"

#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

namespace sessiond::api {

/// What the queue routes need from the node. Pointers outlive the routes.
struct queue_api_env {
  queue::store* store = nullptr;
  queue::lease_waiters* waiters = nullptr;
  queue::queue_metrics* meters = nullptr;
  const model::clock* clock = nullptr;
  model::queue_limits limits;
  std::int64_t max_queues = 1000;
  std::int64_t max_in_flight = 4096;
  std::int64_t retry_after_s = 1;
  /// The settings of a queue (configured, else [queues.defaults]).
  std::function<queue::queue_policy(const std::string& queue)> policy;
  /// The queue's settings as GET /v1/queues/{q} shows them (the policy, the pool, handlers).
  std::function<nlohmann::json(const std::string& queue)> settings_json;
  /// Why an enqueue must be refused now for Redis memory (empty: it may go ahead).
  std::function<std::string()> memory_refusal;
  /// Jobs became waiting in `queue` through this node (`delayed_until_ms` > 0: jobs are due
  /// then): the built-in workers and the maintenance timer are told.
  std::function<void(const std::string& queue, std::int64_t delayed_until_ms)> on_enqueued;
  /// This node registered `queue` (its first enqueue here this minute): the keeper starts
  /// keeping it now rather than at its next look at P{queues}.
  std::function<void(const std::string& queue)> on_registered;
  /// The queue was resumed: whoever waits for it looks again.
  std::function<void(const std::string& queue)> on_resumed;
};

class queue_routes {
public:
  explicit queue_routes(queue_api_env env);
  /// Handles /v1/queues and everything below it; false when `path` is not one of them.
  bool handle(std::string_view path, http::request& req, const http::responder_ptr& res);
  /// Requests in flight now (for /v1/status).
  std::int64_t in_flight() const { return in_flight_.load(); }

private:
  void list_queues(const http::responder_ptr& res);
  void queue_info(const std::string& q, const http::responder_ptr& res);
  void enqueue(const std::string& q, http::request& req, const http::responder_ptr& res,
               bool batch);
  void lease(const std::string& q, http::request& req, const http::responder_ptr& res);
  void report(const std::string& q, const std::string& id, char kind, http::request& req,
              const http::responder_ptr& res);
  void complete_batch(const std::string& q, http::request& req, const http::responder_ptr& res);
  void extend(const std::string& q, const std::string& id, http::request& req,
              const http::responder_ptr& res);
  void job(const std::string& q, const std::string& id, const http::responder_ptr& res);
  void retry(const std::string& q, const std::string& id, const http::responder_ptr& res);
  void remove(const std::string& q, const std::string& id, const http::responder_ptr& res);
  void pause(const std::string& q, bool paused, const http::responder_ptr& res);
  /// Registers `q` (once per minute per node), then runs `then`; answers the failure itself.
  void registered(const std::string& q, const http::responder_ptr& res, std::function<void()> then);
  std::size_t hint() const;

  queue_api_env env_;
  std::atomic<std::int64_t> in_flight_{0};
  std::mutex known_mtx_;
  std::map<std::string, std::chrono::steady_clock::time_point> known_; ///< registered queues
};

} // namespace sessiond::api
