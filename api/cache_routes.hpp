// The HTTP API v1 of the cache (/v1/cache…, docs/cache.md): reads from the near cache or Redis on
// the I/O thread, misses handed to the namespace's cache_loader (single flight), writes and
// invalidations one script each, published to every node's near cache.
#pragma once

#include "actors/cache/cache_env.hpp"
#include "adapters/http/server.hpp"
#include "messages/cache.hpp"

#include <nlohmann/json.hpp>

#include <functional>
#include <string>
#include <string_view>

namespace sessiond::api {

/// How an operator-style call answers: any thread, exactly once.
using cache_answer_fn = std::function<void(unsigned status, std::string json)>;

struct cache_api_env {
  const actors::cache_env* cache = nullptr;
  /// Sends a load to the namespace's cache_loader (it answers l.done, or 503 when none runs).
  std::function<void(const std::string& ns, messages::cache_load&& l)> load;
  /// Runs the namespace's warm query and answers {"warmed": n} (or a problem).
  std::function<void(const std::string& ns, cache_answer_fn answer)> warm;
};

class cache_routes {
public:
  explicit cache_routes(cache_api_env env);
  /// Handles /v1/cache and everything below it; false when `path` is not one of them.
  bool handle(std::string_view path, http::request& req, const http::responder_ptr& res);

private:
  void list(const http::responder_ptr& res);
  void get(const actors::cache_space& s, const std::string& key, const http::request& req,
           const http::responder_ptr& res);
  void put(const actors::cache_space& s, const std::string& key, const http::request& req,
           const http::responder_ptr& res);
  void remove(const actors::cache_space& s, const std::string& key, const http::responder_ptr& res);
  void invalidate(const actors::cache_space& s, const http::request& req,
                  const http::responder_ptr& res);
  void miss(const actors::cache_space& s, const std::string& key, const http::request& req,
            const http::responder_ptr& res, messages::cache_entry_ptr stale);

  cache_api_env env_;
};

/// The answer to a read: the value with Age, Cache-Status and ETag (304 when If-None-Match
/// matches it), or a problem (404 with Cache-Status for a negative entry; 503 with Retry-After).
http::response cache_response(const messages::cache_result& r, const std::string& if_none_match,
                              std::int64_t now_ms);

/// Each namespace with its counts since start (hits, misses, hit ratio, loads, errors, near-cache
/// size, …): GET /v1/cache and /v1/status.
nlohmann::json cache_namespaces_json(const actors::cache_env& env);

/// ?ttl_s=N of a request target: 0 when absent; -1 when present but not a whole number in
/// [1, max_ttl_s] or the query holds anything else.
std::int64_t ttl_query(std::string_view target, std::int64_t max_ttl_s);

} // namespace sessiond::api
