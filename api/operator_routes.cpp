// The operator's routes: GET / (status page), GET /v1/status, GET /v1/cluster, POST /v1/admin/sync,
// the sessions the sync set aside (GET /v1/admin/sync/rejected, POST …/requeue) and POST
// /v1/admin/retention. The node supplies what they show and do through api_options.
#include "api/routes.hpp"

#include <nlohmann/json.hpp>

namespace sessiond::api {

namespace {

void method_not_allowed(const http::responder_ptr& res, const char* allow) {
  auto r = http::problem(405, "urn:sessiond:problem:method-not-allowed", "Method not allowed",
                         std::string("allowed methods: ") + allow);
  r.headers.emplace_back("Allow", allow);
  res->send(std::move(r));
}

void send_json(const http::responder_ptr& res, unsigned status, std::string body) {
  http::response out;
  out.status = status;
  out.body = std::move(body);
  res->send(std::move(out));
}

answer_fn answer_to(http::responder_ptr res) {
  return [res = std::move(res)](unsigned status, std::string body) {
    if (status >= 400)
      return res->send(http::problem(status, "urn:sessiond:problem:operation-failed",
                                     "Operation failed", std::move(body)));
    send_json(res, status, std::move(body));
  };
}

/// The body of POST /v1/admin/retention: empty, or {"dry_run": bool}. False on bad input
/// (answered 400).
bool parse_retention_body(const http::request& req, bool& dry_run, const http::responder_ptr& res) {
  dry_run = false;
  if (req.body.empty())
    return true;
  auto bad = [&](const std::string& why) {
    res->send(http::problem(400, "urn:sessiond:problem:invalid-body", "Invalid request body", why));
    return false;
  };
  auto j = nlohmann::json::parse(req.body, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return bad("the body must be a JSON object such as {\"dry_run\":true}");
  for (auto& [key, value] : j.items()) {
    if (key != "dry_run")
      return bad("unknown member \"" + key + "\" (allowed: dry_run)");
    if (!value.is_boolean())
      return bad("dry_run must be true or false");
    dry_run = value.get<bool>();
  }
  return true;
}

} // namespace

bool routes::operator_route(std::string_view path, http::request& req,
                            const http::responder_ptr& res) const {
  if (path == "/" && opts_.status_page) {
    if (req.verb != http::method::get)
      return method_not_allowed(res, "GET"), true;
    http::response out;
    out.content_type = "text/html; charset=utf-8";
    out.body = opts_.status_page();
    return res->send(std::move(out)), true;
  }
  if (path == "/v1/status" && opts_.status_json) {
    if (req.verb != http::method::get)
      return method_not_allowed(res, "GET"), true;
    return send_json(res, 200, opts_.status_json()), true;
  }
  if (path == "/v1/cluster" && opts_.cluster) {
    if (req.verb != http::method::get)
      return method_not_allowed(res, "GET"), true;
    opts_.cluster([res](unsigned status, std::string body) {
      if (status < 400)
        return send_json(res, status, std::move(body));
      auto r = http::problem(status, "urn:sessiond:problem:redis-unavailable", "Redis unavailable",
                             std::move(body));
      r.headers.emplace_back("Retry-After", "1");
      res->send(std::move(r));
    });
    return true;
  }
  if (path == "/v1/admin/sync" && opts_.sync_now) {
    if (req.verb != http::method::post)
      return method_not_allowed(res, "POST"), true;
    return opts_.sync_now(answer_to(res)), true;
  }
  if (path == "/v1/admin/sync/rejected" && opts_.sync_rejected) {
    if (req.verb != http::method::get)
      return method_not_allowed(res, "GET"), true;
    return opts_.sync_rejected(answer_to(res)), true;
  }
  if (path == "/v1/admin/sync/rejected/requeue" && opts_.sync_requeue) {
    if (req.verb != http::method::post)
      return method_not_allowed(res, "POST"), true;
    return opts_.sync_requeue(answer_to(res)), true;
  }
  if (path == "/v1/admin/retention" && opts_.retention_now) {
    if (req.verb != http::method::post)
      return method_not_allowed(res, "POST"), true;
    bool dry_run = false;
    if (parse_retention_body(req, dry_run, res))
      opts_.retention_now(dry_run, answer_to(res));
    return true;
  }
  return false;
}

} // namespace sessiond::api
