// HTTP API v1 routes for sessions, health and readiness (see docs/api.md).
#include "api/routes.hpp"

#include "adapters/metrics/text_serializer.hpp"
#include "model/merge_patch.hpp"
#include "model/shard_for.hpp"

#include <caf/send.hpp>
#include <nlohmann/json.hpp>

#include <cctype>
#include <chrono>

namespace sessiond::api {

using messages::session_op;
using messages::session_op_kind;
using messages::session_result;

namespace {

constexpr std::string_view sessions_prefix = "/v1/sessions/";
constexpr std::string_view users_prefix = "/v1/users/";
constexpr std::string_view users_suffix = "/sessions";

http::response problem_of(const model::input_error& e) {
  return http::problem(e.status, e.type, e.title, e.detail);
}

void send_problem(const http::responder_ptr& res, unsigned status, std::string type,
                  std::string title, std::string detail) {
  res->send(http::problem(status, std::move(type), std::move(title), std::move(detail)));
}

void method_not_allowed(const http::responder_ptr& res, const char* allow) {
  auto r = http::problem(405, "urn:sessiond:problem:method-not-allowed", "Method not allowed",
                         std::string("allowed methods: ") + allow);
  r.headers.emplace_back("Allow", allow);
  res->send(std::move(r));
}

bool require_media(const http::request& req, std::string_view want,
                   const http::responder_ptr& res) {
  if (media_type(req.content_type) == want)
    return true;
  send_problem(
      res, 415, "urn:sessiond:problem:unsupported-media-type", "Unsupported media type",
      "Content-Type must be " + std::string(want) +
          (req.content_type.empty() ? " (none given)" : " (got " + req.content_type + ")"));
  return false;
}

/// Parses If-Match / If-None-Match into op; answers 400 and returns false when malformed.
bool parse_conditions(const http::request& req, session_op& op, const http::responder_ptr& res) {
  if (req.has_if_match) {
    op.if_match = model::parse_etag_condition(req.if_match);
    if (!op.if_match) {
      send_problem(res, 400, "urn:sessiond:problem:invalid-precondition", "Malformed If-Match",
                   "If-Match must be * or one strong entity tag such as \"3\"");
      return false;
    }
  }
  if (req.has_if_none_match) {
    op.if_none_match = model::parse_etag_condition(req.if_none_match);
    if (!op.if_none_match) {
      send_problem(res, 400, "urn:sessiond:problem:invalid-precondition", "Malformed If-None-Match",
                   "If-None-Match must be * or one strong entity tag such as \"3\"");
      return false;
    }
  }
  return true;
}

/// Bridges a session op back to its HTTP connection and releases the shard gate.
class http_completion : public messages::session_completion {
public:
  http_completion(http::responder_ptr res, session_op_kind kind, std::string id,
                  std::shared_ptr<shard_gate> gate, std::size_t shard, op_stats* stats)
      : res_(std::move(res)),
        kind_(kind),
        id_(std::move(id)),
        gate_(std::move(gate)),
        shard_(shard),
        stats_(stats),
        start_(std::chrono::steady_clock::now()) {}
  ~http_completion() override {
    complete_if_pending();
    gate_->leave(shard_);
  }

protected:
  void on_complete(session_result&& r) override {
    if (stats_) {
      bool write = kind_ != session_op_kind::get && kind_ != session_op_kind::list_user &&
                   r.status >= 200 && r.status < 300;
      auto micros = std::chrono::duration_cast<std::chrono::microseconds>(
                        std::chrono::steady_clock::now() - start_)
                        .count();
      stats_->record(write, static_cast<std::uint64_t>(micros));
    }
    res_->send(render(kind_, id_, std::move(r)));
  }

private:
  http::responder_ptr res_;
  session_op_kind kind_;
  std::string id_;
  std::shared_ptr<shard_gate> gate_;
  std::size_t shard_;
  op_stats* stats_;
  std::chrono::steady_clock::time_point start_;
};

http::response session_body(unsigned status, const model::session& s) {
  http::response out;
  out.status = status;
  out.body.reserve(256 + s.data.size());
  model::append_json(out.body, s);
  out.headers.emplace_back("ETag", model::etag(s.version));
  if (status == 201)
    out.headers.emplace_back("Location", std::string(sessions_prefix) + s.id);
  return out;
}

http::response error_result(session_result&& r) {
  if (r.undecryptable)
    return http::problem(500, "urn:sessiond:problem:undecryptable",
                         "Session data cannot be decrypted", r.detail);
  switch (r.status) {
  case 404:
    return http::problem(404, "urn:sessiond:problem:not-found", "Session not found", r.detail);
  case 410:
    return http::problem(410, "urn:sessiond:problem:revoked", "Session revoked", r.detail);
  case 412:
    return http::problem(412, "urn:sessiond:problem:precondition-failed", "Precondition failed",
                         r.detail);
  case 413:
    return http::problem(413, "urn:sessiond:problem:data-too-large", "Session data too large",
                         r.detail);
  case 422:
    return http::problem(422, "urn:sessiond:problem:invalid-patch",
                         "Patch does not keep data an object", r.detail);
  case 503: {
    auto out =
        http::problem(503, "urn:sessiond:problem:unavailable", "Service unavailable", r.detail);
    out.headers.emplace_back("Retry-After",
                             std::to_string(std::max<std::int64_t>(1, r.retry_after_s)));
    return out;
  }
  default:
    return http::problem(r.status >= 400 ? r.status : 500, "urn:sessiond:problem:internal",
                         "Internal error", r.detail);
  }
}

http::response list_body(const std::vector<model::session>& sessions) {
  http::response out;
  out.body = "{\"sessions\":[";
  for (std::size_t i = 0; i < sessions.size(); ++i) {
    if (i > 0)
      out.body += ',';
    model::append_json(out.body, sessions[i]);
  }
  out.body += "]}";
  return out;
}

} // namespace

shard_gate::shard_gate(std::size_t shards, std::int64_t max_in_flight)
    : slots_(shards), max_(max_in_flight) {}

bool shard_gate::try_enter(std::size_t shard) {
  auto& n = slots_[shard].n;
  if (n.fetch_add(1, std::memory_order_acq_rel) >= max_) {
    n.fetch_sub(1, std::memory_order_acq_rel);
    rejected_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  return true;
}

void shard_gate::leave(std::size_t shard) {
  slots_[shard].n.fetch_sub(1, std::memory_order_acq_rel);
}

std::int64_t shard_gate::in_flight(std::size_t shard) const {
  return slots_[shard].n.load(std::memory_order_relaxed);
}

route_table::route_table(std::size_t shards) : shards_(shards) {}

void route_table::set_router(messages::router_actor r) {
  std::lock_guard<std::mutex> guard{router_mtx_};
  router_ = std::move(r);
}

void route_table::set_shard(std::size_t i, messages::shard_actor s) {
  std::lock_guard<std::mutex> guard{shards_[i].mtx};
  shards_[i].handle = std::move(s);
}

messages::router_actor route_table::router() const {
  std::lock_guard<std::mutex> guard{router_mtx_};
  return router_;
}

messages::shard_actor route_table::shard(std::size_t i) const {
  std::lock_guard<std::mutex> guard{shards_[i].mtx};
  return shards_[i].handle;
}

std::string media_type(std::string_view content_type) {
  auto semi = content_type.find(';');
  auto v = content_type.substr(0, semi);
  while (!v.empty() && std::isspace(static_cast<unsigned char>(v.back())))
    v.remove_suffix(1);
  while (!v.empty() && std::isspace(static_cast<unsigned char>(v.front())))
    v.remove_prefix(1);
  std::string out(v);
  for (auto& c : out)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

http::response render(session_op_kind kind, const std::string& id, session_result&& r) {
  if (r.status >= 400)
    return error_result(std::move(r));
  switch (kind) {
  case session_op_kind::list_user:
    return list_body(r.sessions);
  case session_op_kind::revoke_user: {
    http::response out;
    // detail "postgres_unchecked": PostgreSQL could not say which sessions it alone holds.
    out.body = "{\"revoked\":" + std::to_string(r.count) +
               (r.detail == "postgres_unchecked" ? ",\"postgres_checked\":false}" : "}");
    return out;
  }
  default:
    break;
  }
  if (r.status == 204 || r.status == 304) {
    http::response out;
    out.status = r.status;
    out.content_type.clear();
    if (r.status == 304)
      out.headers.emplace_back("ETag", model::etag(r.session.version));
    return out;
  }
  (void)id;
  return session_body(r.status, r.session);
}

routes::routes(api_options opts, std::shared_ptr<route_table> table,
               std::shared_ptr<shard_gate> gate)
    : opts_(std::move(opts)), table_(std::move(table)), gate_(std::move(gate)) {}

void routes::operator()(http::request&& req, http::responder_ptr res) const {
  if (opts_.metrics)
    res = std::make_shared<metered_responder>(std::move(res), *opts_.metrics, classify(req.target),
                                              req.verb);
  if (opts_.auth) {
    std::string_view path = req.target;
    if (!opts_.auth->admit(req, path.substr(0, path.find('?')), res))
      return;
  }
  route(std::move(req), std::move(res));
}

void routes::route(http::request&& req, http::responder_ptr res) const {
  std::string_view path = req.target;
  path = path.substr(0, path.find('?'));
  if (path.substr(0, sessions_prefix.size()) == sessions_prefix)
    return session_route(path.substr(sessions_prefix.size()), std::move(req), std::move(res));
  if (path.substr(0, users_prefix.size()) == users_prefix && path.size() > users_suffix.size() &&
      path.substr(path.size() - users_suffix.size()) == users_suffix) {
    auto uid =
        path.substr(users_prefix.size(), path.size() - users_prefix.size() - users_suffix.size());
    return user_route(uid, std::move(req), std::move(res));
  }
  if (path == "/healthz") {
    if (req.verb != http::method::get)
      return method_not_allowed(res, "GET");
    http::response out;
    out.body = "{\"status\":\"ok\"}";
    return res->send(std::move(out));
  }
  if (path == "/readyz") {
    if (req.verb != http::method::get)
      return method_not_allowed(res, "GET");
    return readyz(res);
  }
  if (operator_route(path, req, res))
    return;
  if (opts_.queues && opts_.queues->handle(path, req, res))
    return;
  if (opts_.cache && opts_.cache->handle(path, req, res))
    return;
  if (path == "/metrics" && opts_.metrics_text) {
    if (req.verb != http::method::get)
      return method_not_allowed(res, "GET");
    http::response out;
    out.content_type = std::string(metrics::text_content_type);
    out.body = opts_.metrics_text();
    return res->send(std::move(out));
  }
  send_problem(res, 404, "urn:sessiond:problem:no-route", "Not found",
               "no route for " + std::string(path));
}

void routes::readyz(const http::responder_ptr& res) const {
  auto checks = opts_.readiness ? opts_.readiness() : std::vector<dependency_check>{};
  bool ready = true;
  nlohmann::json body;
  body["checks"] = nlohmann::json::object();
  for (const auto& c : checks) {
    ready = ready && (c.up || !c.required);
    body["checks"][c.name] = c.up ? "up" : "down";
    if (!c.detail.empty())
      body["details"][c.name] = c.detail;
  }
  body["status"] = ready ? "ready" : "not ready";
  http::response out;
  out.status = ready ? 200 : 503;
  out.body = body.dump();
  if (!ready)
    out.headers.emplace_back("Retry-After", std::to_string(opts_.retry_after_s));
  res->send(std::move(out));
}

void routes::session_route(std::string_view id, http::request&& req,
                           http::responder_ptr res) const {
  if (!model::valid_id(id))
    return send_problem(res, 400, "urn:sessiond:problem:invalid-id", "Invalid session id",
                        "session ids must match [A-Za-z0-9._:-]{1,128}");
  session_op op;
  op.id = std::string(id);
  switch (req.verb) {
  case http::method::get:
    op.kind = session_op_kind::get;
    break;
  case http::method::put: {
    op.kind = session_op_kind::put;
    if (!require_media(req, "application/json", res))
      return;
    model::put_body body;
    if (auto err = model::parse_put_body(req.body, opts_.limits, body))
      return res->send(problem_of(*err));
    op.user_id = std::move(body.user_id);
    op.body = std::move(body.data);
    op.ttl_s = body.ttl_s;
    break;
  }
  case http::method::patch:
    op.kind = session_op_kind::patch;
    if (!require_media(req, "application/merge-patch+json", res))
      return;
    if (auto err = model::check_merge_patch(req.body))
      return res->send(problem_of(*err));
    op.body = std::move(req.body);
    break;
  case http::method::del:
    op.kind = session_op_kind::del;
    break;
  default:
    return method_not_allowed(res, "GET, PUT, PATCH, DELETE");
  }
  if (!parse_conditions(req, op, res))
    return;
  if (op.if_none_match && op.kind != session_op_kind::get &&
      !(op.kind == session_op_kind::put && op.if_none_match->any))
    return send_problem(res, 400, "urn:sessiond:problem:invalid-precondition",
                        "Unsupported If-None-Match",
                        "If-None-Match is allowed on GET, and as * on PUT (create only)");
  if (op.if_match && op.if_none_match)
    return send_problem(res, 400, "urn:sessiond:problem:invalid-precondition",
                        "Conflicting preconditions", "send If-Match or If-None-Match, not both");
  dispatch(std::move(op), id, std::move(res));
}

void routes::user_route(std::string_view uid, http::request&& req, http::responder_ptr res) const {
  if (!model::valid_id(uid))
    return send_problem(res, 400, "urn:sessiond:problem:invalid-id", "Invalid user id",
                        "user ids must match [A-Za-z0-9._:-]{1,128}");
  session_op op;
  op.id = std::string(uid);
  if (req.verb == http::method::get)
    op.kind = session_op_kind::list_user;
  else if (req.verb == http::method::del)
    op.kind = session_op_kind::revoke_user;
  else
    return method_not_allowed(res, "GET, DELETE");
  dispatch(std::move(op), uid, std::move(res));
}

void routes::dispatch(session_op&& op, std::string_view key, http::responder_ptr res) const {
  auto shard = model::shard_for(key, gate_->shards());
  if (!gate_->try_enter(shard)) {
    if (opts_.metrics)
      opts_.metrics->rejected();
    auto out = http::problem(503, "urn:sessiond:problem:overloaded", "Too many requests in flight",
                             "the shard owning this key has too many operations in flight");
    out.headers.emplace_back("Retry-After", std::to_string(opts_.retry_after_s));
    return res->send(std::move(out));
  }
  op.done = std::make_shared<http_completion>(std::move(res), op.kind, op.id, gate_, shard,
                                              opts_.stats.get());
  if (opts_.divert &&
      opts_.divert(op, [this, shard](session_op&& held) { to_shards(std::move(held), shard); }))
    return;
  to_shards(std::move(op), shard);
}

void routes::to_shards(session_op&& op, std::size_t shard) const {
  if (opts_.start_inline && opts_.start_inline(op, shard))
    return;
  if (op.kind == session_op_kind::list_user || op.kind == session_op_kind::revoke_user)
    caf::anon_send(table_->router(), std::move(op));
  else
    caf::anon_send(table_->shard(shard), std::move(op));
}

} // namespace sessiond::api
