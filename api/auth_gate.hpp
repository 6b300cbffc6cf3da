// Authentication and authorisation of the HTTP API: which routes need a bearer token, which need
// an admin one, and the answers when they are missing or wrong (401, 403, 429 problem+json).
// The tokens themselves (files, constant-time match, the failure limiter) are adapters/auth.
#pragma once

#include "adapters/auth/failure_limiter.hpp"
#include "adapters/auth/tokens.hpp"
#include "adapters/http/server.hpp"
#include "adapters/metrics/registry.hpp"

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

namespace sessiond::api {

/// What a route needs.
enum class access : std::uint8_t {
  open,  ///< no token: /healthz, /readyz (and /metrics, / unless auth.protect_metrics)
  token, ///< an API or an admin token: everything not listed otherwise (default deny)
  admin, ///< an admin token: /v1/admin/…, /v1/status, /v1/cluster
};
/// The access rule of `path` (the target without its query).
access access_for(std::string_view path, bool protect_metrics);

/// The token of an Authorization value `Bearer <token>` (the scheme in any case, RFC 6750 §2.1),
/// blanks around it dropped; empty when the value holds no bearer token.
std::string_view bearer_token(std::string_view authorization);

struct auth_options {
  bool protect_metrics = false;
  auth::limiter_options limits;
  /// Milliseconds of a monotonic clock (tests pass their own); absent: std::chrono::steady_clock.
  std::function<std::int64_t()> now_ms;
  /// One log line at warn level (an address that got blocked); absent: not logged.
  std::function<void(const std::string&)> warn;
};

/// The check in front of every route. Thread-safe: I/O threads call admit() while a reload
/// calls replace(). The token set is swapped whole, so a request sees the old set or the new one.
class auth_gate {
public:
  auth_gate(std::shared_ptr<const auth::token_set> tokens, auth_options opts,
            metrics::Registry& registry);

  /// True when the request may go on; otherwise it has been answered: 401 (no token, or one
  /// this node does not know), 403 (an API token on an admin route) or 429 (its address failed
  /// too often: answered before the token is looked at).
  bool admit(const http::request& req, std::string_view path, const http::responder_ptr& res) const;
  /// Installs a freshly loaded set (SIGHUP); requests from now on are matched against it.
  void replace(std::shared_ptr<const auth::token_set> tokens);
  std::shared_ptr<const auth::token_set> tokens() const;
  /// Counts a reload of the tokens files (sessiond_auth_reloads_total{result}).
  void count_reload(bool ok);
  const auth::failure_limiter& limiter() const { return limiter_; }

private:
  /// Counts and answers a refusal; `limited`: it counts towards `key`'s limit too.
  void refuse(const std::string& key, unsigned status, metrics::Counter& reason,
              const char* www_authenticate, std::string detail, const http::responder_ptr& res,
              bool limited) const;

  auth_options opts_;
  mutable std::mutex mtx_; ///< guards tokens_ (held to copy the pointer only)
  std::shared_ptr<const auth::token_set> tokens_;
  mutable auth::failure_limiter limiter_;
  metrics::Counter& missing_;
  metrics::Counter& unknown_;
  metrics::Counter& forbidden_;
  metrics::Counter& rate_limited_;
  metrics::Counter& reload_ok_;
  metrics::Counter& reload_failed_;
  metrics::Gauge& api_tokens_;
  metrics::Gauge& admin_tokens_;
};

} // namespace sessiond::api
