// HTTP API v1 routes of the cache (see cache_routes.hpp and docs/cache.md).
#include "api/cache_routes.hpp"

#include "api/answers.hpp"

#include <nlohmann/json.hpp>

#include <charconv>

namespace sessiond::api {

namespace {

using json = nlohmann::json;
using messages::cache_entry_ptr;

constexpr std::string_view cache_path = "/v1/cache";

/// Answers one read on the responder when the loader is done.
class reply_completion : public messages::cache_completion {
public:
  reply_completion(http::responder_ptr res, std::string if_none_match, const model::clock* clock)
      : res_(std::move(res)), if_none_match_(std::move(if_none_match)), clock_(clock) {}
  ~reply_completion() override { complete_if_pending(); }

protected:
  void on_complete(messages::cache_result&& r) override {
    res_->send(cache_response(r, if_none_match_, clock_->now_ms()));
  }

private:
  http::responder_ptr res_;
  std::string if_none_match_;
  const model::clock* clock_;
};

bool etag_matches(const std::string& if_none_match, const std::string& etag) {
  if (if_none_match == "*")
    return true;
  // A list of tags, weak or strong (weak comparison, RFC 9110 13.1.2).
  std::string_view rest = if_none_match;
  while (!rest.empty()) {
    auto comma = rest.find(',');
    auto one = rest.substr(0, comma);
    while (!one.empty() && one.front() == ' ')
      one.remove_prefix(1);
    while (!one.empty() && one.back() == ' ')
      one.remove_suffix(1);
    if (one.substr(0, 2) == "W/")
      one.remove_prefix(2);
    if (one == etag)
      return true;
    if (comma == std::string_view::npos)
      break;
    rest.remove_prefix(comma + 1);
  }
  return false;
}

void unknown_namespace(const http::responder_ptr& res, std::string_view ns) {
  send_problem(res, 404, "cache-namespace-not-found", "Cache namespace not found",
               "no namespace '" + std::string(ns) +
                   "' is configured ([cache.namespaces.<name>] in the configuration)");
}

void bad_key(const http::responder_ptr& res) {
  send_problem(res, 400, "invalid-cache-key", "Invalid cache key",
               "cache keys must match [A-Za-z0-9._:@-]{1,256}");
}

void redis_unavailable(const http::responder_ptr& res, const std::string& what,
                       std::int64_t retry_after_s) {
  send_problem(res, 503, "cache-unavailable", "Cache unavailable", what, retry_after_s);
}

} // namespace

http::response cache_response(const messages::cache_result& r, const std::string& if_none_match,
                              std::int64_t now_ms) {
  if (r.status == 200 && r.entry) {
    http::response out;
    const auto& e = *r.entry;
    out.headers.emplace_back("Age", std::to_string(model::cache_age_s(e, now_ms)));
    out.headers.emplace_back("Cache-Status", model::cache_status(r.outcome, e, now_ms));
    out.headers.emplace_back("ETag", e.etag);
    if (!if_none_match.empty() && etag_matches(if_none_match, e.etag)) {
      out.status = 304;
      out.content_type.clear();
      return out;
    }
    out.body = e.value;
    return out;
  }
  if (r.status == 404) {
    auto out = http::problem(404, "urn:sessiond:problem:cache-miss", "Not found",
                             r.detail.empty() ? "no value is cached for this key" : r.detail);
    if (r.entry)
      out.headers.emplace_back("Cache-Status", model::cache_status(r.outcome, *r.entry, now_ms));
    else
      out.headers.emplace_back("Cache-Status", "sessiond; fwd=miss");
    return out;
  }
  auto out =
      http::problem(503, "urn:sessiond:problem:cache-unavailable", "Cache unavailable", r.detail);
  out.headers.emplace_back("Retry-After",
                           std::to_string(std::max<std::int64_t>(1, r.retry_after_s)));
  return out;
}

std::int64_t ttl_query(std::string_view target, std::int64_t max_ttl_s) {
  auto q = target.find('?');
  if (q == std::string_view::npos || q + 1 == target.size())
    return 0;
  auto query = target.substr(q + 1);
  if (query.substr(0, 6) != "ttl_s=")
    return -1;
  auto v = query.substr(6);
  std::int64_t n = 0;
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc{} || end != v.data() + v.size() || n < 1 || n > max_ttl_s)
    return -1;
  return n;
}

cache_routes::cache_routes(cache_api_env env) : env_(std::move(env)) {}

bool cache_routes::handle(std::string_view path, http::request& req,
                          const http::responder_ptr& res) {
  if (path.substr(0, cache_path.size()) != cache_path ||
      (path.size() > cache_path.size() && path[cache_path.size()] != '/'))
    return false;
  auto rest = path.substr(cache_path.size());
  if (rest.empty() || rest == "/") {
    if (req.verb != http::method::get)
      return method_not_allowed(res, "GET"), true;
    return list(res), true;
  }
  auto parts = segments(rest.substr(1));
  const auto* s = env_.cache->space(std::string(parts[0]));
  if (s == nullptr)
    return unknown_namespace(res, parts[0]), true;
  if (parts.size() != 2)
    return send_problem(res, 404, "no-route", "Not found", "no route for " + std::string(path)),
           true;
  auto second = parts[1];
  if (second == "invalidate" || second == "warm") {
    if (req.verb != http::method::post)
      return method_not_allowed(res, "POST"), true;
    if (second == "warm") {
      if (s->cfg.warm.empty())
        return send_problem(res, 404, "no-warm-query", "No warm query",
                            "namespace '" + s->name + "' has no warm query configured"),
               true;
      env_.warm(s->name, [res](unsigned status, std::string body) {
        send_json(res, status, std::move(body));
      });
      return true;
    }
    if (require_json(req, res))
      invalidate(*s, req, res);
    return true;
  }
  std::string key(second);
  if (!model::valid_cache_key(key))
    return bad_key(res), true;
  switch (req.verb) {
  case http::method::get:
    return get(*s, key, req, res), true;
  case http::method::put:
    if (require_json(req, res))
      put(*s, key, req, res);
    return true;
  case http::method::del:
    return remove(*s, key, res), true;
  default:
    return method_not_allowed(res, "GET, PUT, DELETE"), true;
  }
}

nlohmann::json cache_namespaces_json(const actors::cache_env& env) {
  json spaces = json::array();
  for (const auto& [name, s] : env.spaces) {
    const auto& m = *s.meters;
    auto hits = m.hits.Value(), misses = m.misses.Value();
    spaces.push_back({{"name", name},
                      {"ttl_s", s.cfg.ttl_s},
                      {"loader", !s.cfg.loader.empty()},
                      {"warm", !s.cfg.warm.empty()},
                      {"hits", hits},
                      {"near_hits", m.near_hits.Value()},
                      {"misses", misses},
                      {"hit_ratio", hits + misses > 0 ? hits / (hits + misses) : 0.0},
                      {"loads", m.loads.Value()},
                      {"load_errors", m.load_errors.Value()},
                      {"stale_served", m.stale_served.Value()},
                      {"single_flight_waits", m.single_flight_waits.Value()},
                      {"early_refreshes", m.early_refreshes.Value()},
                      {"invalidations", m.invalidations.Value()},
                      {"skipped_writes", m.skipped_redis_down.Value() + m.skipped_memory.Value()},
                      {"near_entries", s.near->size()},
                      {"near_cache_entries", s.cfg.near_cache_entries}});
  }
  return spaces;
}

void cache_routes::list(const http::responder_ptr& res) {
  bool up = env_.cache->redis_up && env_.cache->redis_up();
  send_json(res, 200,
            json{{"namespaces", cache_namespaces_json(*env_.cache)}, {"degraded", !up}}.dump());
}

void cache_routes::get(const actors::cache_space& s, const std::string& key,
                       const http::request& req, const http::responder_ptr& res) {
  const auto& env = *env_.cache;
  auto now = env.clock->now_ms();
  if (auto e = s.near->get(key, now); e && e->fresh_until_ms > now) {
    s.meters->hits.Increment();
    s.meters->near_hits.Increment();
    messages::cache_result r;
    r.status = e->negative ? 404 : 200;
    r.entry = e;
    r.outcome = model::cache_outcome::near_hit;
    return res->send(cache_response(r, req.if_none_match, now));
  }
  if (!env.redis_up()) // degraded: the loader answers (single flight still holds)
    return miss(s, key, req, res, nullptr);
  auto* self = this;
  std::string inm = req.if_none_match;
  env.store->get(
      0, s.name, key, [self, &s, key, inm, res](bool ok, std::optional<model::cache_entry> found) {
        const auto& env = *self->env_.cache;
        auto now = env.clock->now_ms();
        cache_entry_ptr e;
        if (ok && found)
          e = std::make_shared<const model::cache_entry>(std::move(*found));
        if (e && e->fresh_until_ms > now) {
          s.meters->hits.Increment();
          s.near->put(key, e, now);
          if (!s.cfg.loader.empty() && !e->negative &&
              model::refresh_early(now, *e, s.cfg.early_refresh_beta, 1.0 - actors::unit_random()))
            self->env_.load(s.name, messages::cache_load{key, nullptr, nullptr});
          messages::cache_result r;
          r.status = e->negative ? 404 : 200;
          r.entry = e;
          r.outcome = model::cache_outcome::hit;
          return res->send(cache_response(r, inm, now));
        }
        http::request fake;
        fake.if_none_match = inm;
        self->miss(s, key, fake, res, e && !e->negative ? e : nullptr);
      });
}

void cache_routes::miss(const actors::cache_space& s, const std::string& key,
                        const http::request& req, const http::responder_ptr& res,
                        cache_entry_ptr stale) {
  s.meters->misses.Increment();
  if (s.cfg.loader.empty()) {
    messages::cache_result r;
    r.status = 404;
    r.detail = "no value is cached for this key and namespace '" + s.name + "' has no loader";
    return res->send(cache_response(r, req.if_none_match, env_.cache->clock->now_ms()));
  }
  auto done = std::make_shared<reply_completion>(res, req.if_none_match, env_.cache->clock);
  env_.load(s.name, messages::cache_load{key, std::move(done), std::move(stale)});
}

void cache_routes::put(const actors::cache_space& s, const std::string& key,
                       const http::request& req, const http::responder_ptr& res) {
  const auto& env = *env_.cache;
  auto ttl_s = ttl_query(req.target, env.cfg->max_ttl_s);
  if (ttl_s < 0)
    return send_problem(res, 400, "invalid-ttl", "Invalid ttl_s",
                        "the only query parameter is ttl_s, a whole number of seconds in [1, " +
                            std::to_string(env.cfg->max_ttl_s) + "] (cache.max_ttl_s)");
  if (static_cast<std::int64_t>(req.body.size()) > env.cfg->max_value_bytes)
    return send_problem(res, 413, "value-too-large", "Value too large",
                        "the value has " + std::to_string(req.body.size()) +
                            " bytes; cache.max_value_bytes is " +
                            std::to_string(env.cfg->max_value_bytes));
  auto value = json::parse(req.body, nullptr, false);
  if (value.is_discarded() || req.body.empty())
    return send_problem(res, 400, "invalid-json", "Invalid JSON",
                        "the body must be one JSON value");
  auto refusal = env.write_refusal();
  if (!refusal.empty())
    return redis_unavailable(res,
                             refusal == "memory"
                                 ? "the cache's Redis is above cache.max_redis_memory_ratio of its "
                                   "maxmemory; cache writes are refused until it is below"
                                 : "the cache's Redis is unreachable; the value was not stored",
                             env.cfg->retry_after_s);
  auto now = env.clock->now_ms();
  auto e = std::make_shared<const model::cache_entry>(
      actors::make_entry(s, false, value.dump(), now, 0, ttl_s * 1000));
  s.near->erase(key); // every node's, this one's at once: the next read sees the new value
  auto retry = env.cfg->retry_after_s;
  env.store->put(0, s.name, key, *e, actors::keep_ms(s, *e), true,
                 [res, retry](bool ok, const std::string& error) {
                   if (!ok)
                     return redis_unavailable(res, error, retry);
                   no_content(res);
                 });
}

void cache_routes::remove(const actors::cache_space& s, const std::string& key,
                          const http::responder_ptr& res) {
  const auto& env = *env_.cache;
  s.near->erase(key);
  auto retry = env.cfg->retry_after_s;
  auto* meters = s.meters;
  env.store->invalidate(0, s.name, key,
                        [res, retry, meters](bool ok, std::int64_t n, const std::string& error) {
                          if (!ok)
                            return redis_unavailable(res, error, retry);
                          meters->invalidations.Increment(static_cast<double>(n));
                          no_content(res);
                        });
}

void cache_routes::invalidate(const actors::cache_space& s, const http::request& req,
                              const http::responder_ptr& res) {
  const auto& env = *env_.cache;
  auto body = json::parse(req.body, nullptr, false);
  auto usage = [&](std::string why) {
    send_problem(res, 400, "invalid-invalidation", "Invalid invalidation",
                 why + "; send {\"prefix\": \"<key prefix>\"} or {\"all\": true}");
  };
  if (!body.is_object())
    return usage("the body must be a JSON object");
  std::string prefix;
  bool has_prefix = body.contains("prefix"), has_all = body.contains("all");
  if (has_prefix == has_all || body.size() != 1)
    return usage("give exactly one of prefix and all");
  if (has_prefix) {
    if (!body["prefix"].is_string())
      return usage("prefix must be a string");
    prefix = body["prefix"].get<std::string>();
    if (prefix.empty() || !model::valid_cache_prefix(prefix))
      return usage("prefix must match [A-Za-z0-9._:@-]{1,256}");
  } else if (body["all"] != true) {
    return usage("all must be true");
  }
  s.near->erase_prefix(prefix);
  auto retry = env.cfg->retry_after_s;
  auto* meters = s.meters;
  env.store->invalidate_prefix(
      0, s.name, prefix, env.cfg->invalidate_batch,
      [res, retry, meters](bool ok, std::int64_t n, const std::string& error) {
        meters->invalidations.Increment(static_cast<double>(n));
        if (!ok)
          return redis_unavailable(res, error + " (after " + std::to_string(n) + " keys)", retry);
        send_json(res, 200, json{{"invalidated", n}}.dump());
      });
}

} // namespace sessiond::api
