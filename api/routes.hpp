// The HTTP API v1 of sessions: parses and checks each request, applies backpressure, sends the
// operation to the session router and renders the result (JSON, ETag, problem+json).
#pragma once

#include "adapters/http/server.hpp"
#include "api/auth_gate.hpp"
#include "api/cache_routes.hpp"
#include "api/metrics.hpp"
#include "api/op_stats.hpp"
#include "api/queue_routes.hpp"
#include "messages/session.hpp"
#include "model/session.hpp"

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

namespace sessiond::api {

/// Per-shard count of requests in flight. Past the limit the API answers 503 at once, so no
/// mailbox or Redis queue grows without bound. Thread-safe, lock-free.
class shard_gate {
public:
  shard_gate(std::size_t shards, std::int64_t max_in_flight);
  bool try_enter(std::size_t shard);
  void leave(std::size_t shard);
  std::int64_t in_flight(std::size_t shard) const;
  std::uint64_t rejected() const { return rejected_.load(std::memory_order_relaxed); }
  std::size_t shards() const { return slots_.size(); }

private:
  struct alignas(64) slot {
    std::atomic<std::int64_t> n{0};
  };
  std::vector<slot> slots_;
  std::int64_t max_;
  std::atomic<std::uint64_t> rejected_{0};
};

/// The current handles of the router and of every shard, kept up to date by the supervisor
/// (a restarted actor has a new handle). The API sends a session op straight to the shard that
/// owns it (model::shard_for), so the router is not a funnel on the hot path; user-wide ops go
/// to the router. GET, PUT and DELETE do not even need the shard actor (api_options::
/// start_inline). Thread-safe: one small mutex per slot, held only to copy a handle.
class route_table {
public:
  explicit route_table(std::size_t shards);
  void set_router(messages::router_actor r);
  void set_shard(std::size_t i, messages::shard_actor s);
  messages::router_actor router() const;
  messages::shard_actor shard(std::size_t i) const;
  std::size_t shards() const { return shards_.size(); }

private:
  struct alignas(64) shard_slot {
    mutable std::mutex mtx;
    messages::shard_actor handle;
  };
  mutable std::mutex router_mtx_;
  messages::router_actor router_;
  std::vector<shard_slot> shards_;
};

/// One dependency as /readyz shows it. The node is ready when every required one is up.
struct dependency_check {
  std::string name;
  bool up = false;
  bool required = true;
  std::string detail; ///< shown under "details" when not empty
};

/// How an operator endpoint answers: any thread, exactly once.
using answer_fn = std::function<void(unsigned status, std::string json)>;

struct api_options {
  model::body_limits limits;
  std::int64_t retry_after_s = 1;
  /// Serves a session op somewhere other than the Redis shards (the modes that read or write
  /// PostgreSQL first, degraded serving while Redis is down): true when it took `op` (moved
  /// from) and completes op.done. Absent or false: the op goes to its shard. `to_shards` sends
  /// an op to its shard as if divert had answered false: for one divert took and held (the
  /// switch back from degraded serving), called later from another thread.
  std::function<bool(messages::session_op&, std::function<void(messages::session_op&&)> to_shards)>
      divert;
  /// Starts a single-round-trip op (GET, PUT, DELETE) on its shard's Redis connection right from
  /// the I/O thread, without an actor hop: true when it took `op` (moved from). Absent or false:
  /// the op goes to its shard actor (PATCH) or the router (user-wide ops).
  std::function<bool(messages::session_op&, std::size_t shard)> start_inline;
  /// Readiness of each dependency, for /readyz.
  std::function<std::vector<dependency_check>()> readiness;
  /// GET /v1/status: the operator's dashboard as JSON (absent: 404).
  std::function<std::string()> status_json;
  /// POST /v1/admin/sync: run a sync now and answer when it finished (absent: 404).
  std::function<void(answer_fn)> sync_now;
  /// GET /v1/admin/sync/rejected: the sessions PostgreSQL refused, set aside (absent: 404).
  std::function<void(answer_fn)> sync_rejected;
  /// POST /v1/admin/sync/rejected/requeue: mark them all dirty again (absent: 404).
  std::function<void(answer_fn)> sync_requeue;
  /// POST /v1/admin/retention: run retention now, `dry_run` counts only (absent: 404).
  std::function<void(bool dry_run, answer_fn)> retention_now;
  /// GET /v1/cluster: the nodes and the Redis topology (200), or 503 when Redis does not answer.
  std::function<void(answer_fn)> cluster;
  /// GET /: the HTML status page (absent: 404).
  std::function<const std::string&()> status_page;
  /// Request metrics; null when metrics.enabled = false (then /metrics answers 404).
  std::shared_ptr<api_metrics> metrics;
  /// Session operation counts and latencies for /v1/status; null: not counted.
  std::shared_ptr<op_stats> stats;
  /// The Prometheus text of GET /metrics.
  std::function<std::string()> metrics_text;
  /// The job queue's routes (/v1/queues…); null: the queue is off (404).
  std::shared_ptr<queue_routes> queues;
  /// The cache's routes (/v1/cache…); null: the cache is off (404).
  std::shared_ptr<cache_routes> cache;
  /// Bearer-token checks in front of every route; null: no tokens file set, every route open.
  std::shared_ptr<const auth_gate> auth;
};

/// The request handler given to the HTTP server.
class routes {
public:
  routes(api_options opts, std::shared_ptr<route_table> table, std::shared_ptr<shard_gate> gate);
  void operator()(http::request&& req, http::responder_ptr res) const;

private:
  void route(http::request&& req, http::responder_ptr res) const;
  void session_route(std::string_view id, http::request&& req, http::responder_ptr res) const;
  void user_route(std::string_view uid, http::request&& req, http::responder_ptr res) const;
  void dispatch(messages::session_op&& op, std::string_view key, http::responder_ptr res) const;
  /// The Redis side of dispatch(): the op inline on its shard's connection, its shard actor or
  /// the router.
  void to_shards(messages::session_op&& op, std::size_t shard) const;
  void readyz(const http::responder_ptr& res) const;
  /// The operator routes (/, /v1/status, /v1/admin/…); false when `path` is none of them.
  bool operator_route(std::string_view path, http::request& req,
                      const http::responder_ptr& res) const;

  api_options opts_;
  std::shared_ptr<route_table> table_;
  std::shared_ptr<shard_gate> gate_;
};

/// Renders the result of one op as the HTTP answer of the contract.
http::response render(messages::session_op_kind kind, const std::string& id,
                      messages::session_result&& r);

/// The media type of a Content-Type value, lower-cased, without parameters.
std::string media_type(std::string_view content_type);

} // namespace sessiond::api
