// See auth_gate.hpp. The rules are listed in docs/security.md; keep the two in step.
#include "api/auth_gate.hpp"

#include "adapters/metrics/metric.hpp"
#include "model/text.hpp"

#include <chrono>

namespace sessiond::api {

namespace {

constexpr const char* realm = "Bearer realm=\"sessiond\"";
constexpr const char* realm_invalid = "Bearer realm=\"sessiond\", error=\"invalid_token\"";
constexpr const char* realm_scope = "Bearer realm=\"sessiond\", error=\"insufficient_scope\"";

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

bool blank(char ch) {
  return ch == ' ' || ch == '\t';
}

std::int64_t steady_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

metrics::Family<metrics::Counter>& failures_family(metrics::Registry& r) {
  return metrics::BuildCounter()
      .Name("sessiond_auth_failures_total")
      .Help("Requests refused by authentication: reason missing (no bearer token), unknown (a "
            "token this node does not accept), forbidden (an API token on an admin route), "
            "rate_limited (429: the address failed too often, its token not looked at).")
      .Register(r);
}

metrics::Family<metrics::Counter>& reloads_family(metrics::Registry& r) {
  return metrics::BuildCounter()
      .Name("sessiond_auth_reloads_total")
      .Help("Re-reads of the tokens files (SIGHUP): result ok, or failed (the old tokens kept).")
      .Register(r);
}

metrics::Family<metrics::Gauge>& tokens_family(metrics::Registry& r) {
  return metrics::BuildGauge()
      .Name("sessiond_auth_tokens")
      .Help("Tokens accepted now, by role (api, admin).")
      .Register(r);
}

} // namespace

access access_for(std::string_view path, bool protect_metrics) {
  if (path == "/healthz" || path == "/readyz")
    return access::open;
  if (path == "/metrics" || path == "/") // the status page; its figures come from /v1/status
    return protect_metrics ? access::token : access::open;
  if (path == "/v1/admin" || starts_with(path, "/v1/admin/") || path == "/v1/status" ||
      path == "/v1/cluster")
    return access::admin;
  return access::token; // default deny: a route added later is never open by accident
}

std::string_view bearer_token(std::string_view authorization) {
  while (!authorization.empty() && blank(authorization.front()))
    authorization.remove_prefix(1);
  constexpr std::string_view scheme = "bearer";
  if (authorization.size() <= scheme.size() ||
      !model::iequals(authorization.substr(0, scheme.size()), scheme) ||
      !blank(authorization[scheme.size()]))
    return {};
  std::string_view token = authorization.substr(scheme.size());
  while (!token.empty() && blank(token.front()))
    token.remove_prefix(1);
  while (!token.empty() && blank(token.back()))
    token.remove_suffix(1);
  return token;
}

auth_gate::auth_gate(std::shared_ptr<const auth::token_set> tokens, auth_options opts,
                     metrics::Registry& registry)
    : opts_(std::move(opts)),
      tokens_(std::move(tokens)),
      limiter_(opts_.limits),
      missing_(failures_family(registry).Add({{"reason", "missing"}})),
      unknown_(failures_family(registry).Add({{"reason", "unknown"}})),
      forbidden_(failures_family(registry).Add({{"reason", "forbidden"}})),
      rate_limited_(failures_family(registry).Add({{"reason", "rate_limited"}})),
      reload_ok_(reloads_family(registry).Add({{"result", "ok"}})),
      reload_failed_(reloads_family(registry).Add({{"result", "failed"}})),
      api_tokens_(tokens_family(registry).Add({{"role", "api"}})),
      admin_tokens_(tokens_family(registry).Add({{"role", "admin"}})) {
  if (!opts_.now_ms)
    opts_.now_ms = steady_ms;
  if (!tokens_)
    tokens_ = std::make_shared<const auth::token_set>();
  api_tokens_.Set(static_cast<double>(tokens_->api_count()));
  admin_tokens_.Set(static_cast<double>(tokens_->admin_count()));
}

bool auth_gate::admit(const http::request& req, std::string_view path,
                      const http::responder_ptr& res) const {
  access need = access_for(path, opts_.protect_metrics);
  if (need == access::open)
    return true;
  const std::string key = auth::client_key(req.remote_address);
  if (auto ms = limiter_.blocked_ms(key, opts_.now_ms()); ms > 0) {
    rate_limited_.Increment();
    auto out = http::problem(429, "urn:sessiond:problem:too-many-auth-failures",
                             "Too many failed authentications",
                             "too many requests without a valid token came from this address; "
                             "it is refused until the Retry-After has passed");
    out.headers.emplace_back("Retry-After", std::to_string((ms + 999) / 1000));
    res->send(std::move(out));
    return false;
  }
  std::string_view presented = bearer_token(req.authorization);
  if (presented.empty()) {
    refuse(key, 401, missing_, realm, "this route needs an Authorization: Bearer <token> header",
           res, true);
    return false;
  }
  auth::role role = tokens()->match(presented);
  if (role == auth::role::none) {
    refuse(key, 401, unknown_, realm_invalid, "the bearer token is not one this node accepts", res,
           true);
    return false;
  }
  if (need == access::admin && role != auth::role::admin) {
    refuse(key, 403, forbidden_, realm_scope,
           std::string(path) + " needs an admin token; an API token may not call it", res, false);
    return false;
  }
  return true;
}

void auth_gate::refuse(const std::string& key, unsigned status, metrics::Counter& reason,
                       const char* www_authenticate, std::string detail,
                       const http::responder_ptr& res, bool limited) const {
  reason.Increment();
  if (limited) {
    if (limiter_.record_failure(key, opts_.now_ms()) && opts_.warn)
      opts_.warn("auth: " + std::to_string(limiter_.options().max_failures) +
                 " failed authentications from " + key + " within " +
                 std::to_string(limiter_.options().window_ms) + " ms; refused with 429 for " +
                 std::to_string(limiter_.options().window_ms) + " ms");
  }
  auto out = http::problem(status,
                           status == 403 ? "urn:sessiond:problem:forbidden"
                                         : "urn:sessiond:problem:unauthorized",
                           status == 403 ? "Forbidden" : "Unauthorized", std::move(detail));
  out.headers.emplace_back("WWW-Authenticate", www_authenticate);
  res->send(std::move(out));
}

void auth_gate::replace(std::shared_ptr<const auth::token_set> tokens) {
  if (!tokens)
    return;
  api_tokens_.Set(static_cast<double>(tokens->api_count()));
  admin_tokens_.Set(static_cast<double>(tokens->admin_count()));
  std::lock_guard<std::mutex> guard{mtx_};
  tokens_ = std::move(tokens);
}

std::shared_ptr<const auth::token_set> auth_gate::tokens() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return tokens_;
}

void auth_gate::count_reload(bool ok) {
  (ok ? reload_ok_ : reload_failed_).Increment();
}

} // namespace sessiond::api
