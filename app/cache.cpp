// The cache capability (see cache.hpp): wiring, start-up check, invalidation fan-in, status.
#include "app/cache.hpp"

#include "actors/cache/cache_env.hpp"
#include "actors/cache/cache_loader.hpp"
#include "actors/queue/queue_keeper.hpp"
#include "adapters/cache/cache_metrics.hpp"
#include "adapters/cache/subscriber.hpp"
#include "adapters/postgres/pool.hpp"
#include "app/adapter_options.hpp"
#include "app/log.hpp"

#include <caf/actor_system.hpp>
#include <caf/send.hpp>
#include <caf/typed_event_based_actor.hpp>

#include <atomic>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>

namespace sessiond::app {

namespace {

using json = nlohmann::json;

std::string statement_name(const std::string& ns) {
  return "sessiond_cache_" + ns;
}

} // namespace

struct cache_service::impl {
  const config::config& cfg;
  const model::clock& clock;
  std::unique_ptr<redis::client> own_redis;
  redis::client* redis = nullptr;
  std::unique_ptr<cache::store> store;
  std::unique_ptr<cache::cache_metrics> meters;
  std::unique_ptr<postgres::pool> pool;
  std::unique_ptr<cache::subscriber> subscriber;
  std::shared_ptr<actors::cache_env> env;
  std::shared_ptr<api::cache_routes> routes;

  mutable std::mutex mtx;
  std::map<std::string, messages::cache_loader_actor> loaders;
  std::map<std::string, std::vector<messages::cache_load>> pending; ///< before its loader runs
  std::int64_t held = 0;
  std::atomic<double> memory_ratio{0};
  std::atomic<bool> memory_known{false};
  std::uint64_t samples = 0;

  impl(const cache_deps& d) : cfg(*d.cfg), clock(*d.clock) {
    redis = d.redis;
    if (!cfg.redis.cache_url.empty()) {
      own_redis = std::make_unique<redis::client>(
          d.loops, redis_options(cfg, cfg.redis.cache_url, "redis.cache_url"));
      redis = own_redis.get();
    }
    store = std::make_unique<cache::store>(*redis, cfg.redis.key_prefix);
    store->seal_with(d.keys);
    std::vector<std::string> names;
    for (const auto& [ns, unused] : cfg.cache.namespaces)
      names.push_back(ns);
    meters = std::make_unique<cache::cache_metrics>(*d.registry, names);
    pool = std::make_unique<postgres::pool>(postgres_options(cfg),
                                            static_cast<std::size_t>(cfg.postgres.pool_size),
                                            static_cast<std::size_t>(cfg.cache.max_loads));
    env = std::make_shared<actors::cache_env>();
    env->store = store.get();
    env->pool = pool.get();
    env->clock = &clock;
    env->cfg = &cfg.cache;
    env->node_id = cfg.node.id;
    env->log = log_at;
    for (const auto& [ns, c] : cfg.cache.namespaces) {
      auto& s = env->spaces[ns];
      s.name = ns;
      s.cfg = c;
      s.near = std::make_unique<cache::near_cache>(static_cast<std::size_t>(c.near_cache_entries),
                                                   c.near_ttl_ms);
      s.meters = meters->of(ns);
      s.statement = statement_name(ns);
    }
    env->redis_up = [r = redis] { return r->connected(); };
    env->write_refusal = [this]() -> std::string {
      if (!redis->connected())
        return "redis_down";
      if (memory_known.load() && memory_ratio.load() > cfg.cache.max_redis_memory_ratio)
        return "memory";
      return {};
    };

    api::cache_api_env e;
    e.cache = env.get();
    e.load = [this](const std::string& ns, messages::cache_load&& l) { load(ns, std::move(l)); };
    e.warm = [this](const std::string& ns, api::cache_answer_fn answer) {
      warm(ns, std::move(answer));
    };
    routes = std::make_shared<api::cache_routes>(std::move(e));

    auto sub_opts =
        redis_options(cfg, cfg.redis.cache_url.empty() ? cfg.redis.url : cfg.redis.cache_url,
                      cfg.redis.cache_url.empty() ? "redis.url" : "redis.cache_url");
    subscriber = std::make_unique<cache::subscriber>(
        cache::subscriber_options{sub_opts, store->channel(), std::chrono::milliseconds(1000)},
        [this](std::string_view payload) { on_invalidation(payload); },
        [this](bool up) { on_subscription(up); });
  }

  void on_invalidation(std::string_view payload) {
    cache::invalidation m;
    if (!cache::decode(payload, m))
      return;
    auto it = env->spaces.find(m.ns);
    if (it == env->spaces.end())
      return;
    if (m.prefix)
      it->second.near->erase_prefix(m.key);
    else
      it->second.near->erase(m.key);
  }

  bool ever_subscribed = false; // the subscriber's thread only
  void on_subscription(bool up) {
    meters->subscribed().Set(up ? 1 : 0);
    if (!up) {
      log_warn("cache: invalidation subscription lost; near caches are emptied when it is back");
      return;
    }
    if (ever_subscribed) { // it cannot know what it missed meanwhile
      for (auto& [ns, s] : env->spaces)
        s.near->clear();
      log_info("cache: invalidation subscription back; near caches emptied");
    }
    ever_subscribed = true;
  }

  void load(const std::string& ns, messages::cache_load&& l) {
    messages::cache_loader_actor a;
    {
      std::lock_guard<std::mutex> guard{mtx};
      auto it = loaders.find(ns);
      if (it != loaders.end())
        a = it->second;
    }
    if (!a) {
      // Not spawned yet (the supervisor starts it just after the listener opens): held until it
      // is, up to cache.max_loads.
      std::lock_guard<std::mutex> guard{mtx};
      if (loaders.count(ns) == 0 && held < cfg.cache.max_loads) {
        ++held;
        pending[ns].push_back(std::move(l));
        return;
      }
      if (auto it = loaders.find(ns); it != loaders.end()) {
        caf::anon_send(it->second, std::move(l));
        return;
      }
      if (l.done) {
        messages::cache_result r;
        r.detail = "the cache loader of namespace '" + ns + "' is not running yet; retry";
        r.retry_after_s = cfg.cache.retry_after_s;
        l.done->complete(std::move(r));
      }
      return;
    }
    caf::anon_send(a, std::move(l));
  }

  void warm(const std::string& ns, api::cache_answer_fn answer) {
    const auto* s = env->space(ns);
    auto e = env;
    auto max_bytes = static_cast<std::size_t>(cfg.cache.max_value_bytes);
    auto retry = cfg.cache.retry_after_s;
    bool queued = pool->submit([e, s, answer, max_bytes, retry](postgres::client* c) {
      auto problem = [&](unsigned status, const std::string& title, const std::string& detail) {
        json p{{"type", "urn:sessiond:problem:cache-warm-failed"},
               {"title", title},
               {"status", status},
               {"detail", detail}};
        answer(status, p.dump());
      };
      if (c == nullptr)
        return problem(503, "PostgreSQL unreachable",
                       "the warm query could not run; retry in " + std::to_string(retry) + " s");
      postgres::result rows;
      try {
        rows = c->exec(s->cfg.warm);
      } catch (const std::exception& ex) {
        return problem(503, "Warm query failed", ex.what());
      }
      auto now = e->clock->now_ms();
      auto left = std::make_shared<std::atomic<std::size_t>>(1);
      auto warmed = std::make_shared<std::atomic<std::int64_t>>(0);
      auto finish = [left, warmed, answer] {
        if (left->fetch_sub(1) == 1)
          answer(200, json{{"warmed", warmed->load()}}.dump());
      };
      for (const auto& row : rows.rows) {
        if (row.size() < 2 || !row[0] || !model::valid_cache_key(*row[0]))
          continue;
        auto checked = actors::check_loaded(*row[0], row[1], true, max_bytes);
        if (!checked.ok)
          continue;
        auto entry = std::make_shared<const model::cache_entry>(
            actors::make_entry(*s, !checked.found, std::move(checked.value), now, 0));
        left->fetch_add(1);
        warmed->fetch_add(1);
        actors::store_loaded(*e, *s, *row[0], entry, finish);
      }
      finish();
    });
    if (!queued)
      answer(503, json{{"type", "urn:sessiond:problem:cache-unavailable"},
                       {"title", "Cache unavailable"},
                       {"status", 503},
                       {"detail", "the cache's PostgreSQL queue is full; retry"}}
                      .dump());
  }

  void read_memory() {
    redis->command(0, {"INFO", "memory"}, [this](redis::errc err, redis::reply&& r) {
      if (err != redis::errc::ok || r.is_error())
        return;
      auto m = actors::parse_memory(r.str);
      double ratio = m.max > 0 ? static_cast<double>(m.used) / static_cast<double>(m.max) : 0.0;
      memory_ratio.store(ratio);
      memory_known.store(m.max > 0);
      meters->redis_memory_ratio().Set(ratio);
    });
  }
};

cache_service::cache_service(cache_deps deps) : impl_(std::make_unique<impl>(deps)) {}
cache_service::~cache_service() = default;

void cache_service::start_client() {
  if (impl_->own_redis)
    impl_->own_redis->start();
  if (!impl_->env->spaces.empty())
    impl_->subscriber->start();
}

void cache_service::check_loaders() {
  bool any = false;
  for (const auto& [ns, s] : impl_->env->spaces)
    any = any || !s.cfg.loader.empty() || !s.cfg.warm.empty();
  if (!any)
    return;
  std::optional<postgres::client> conn;
  try {
    conn.emplace(postgres_options(impl_->cfg));
  } catch (const postgres::pg_error& e) { // not the loaders' fault: they are checked at use
    log_warn(std::string("cache: loaders not checked at start, PostgreSQL unreachable: ") +
             e.what());
    return;
  }
  auto& c = *conn;
  for (const auto& [ns, s] : impl_->env->spaces) {
    for (const auto& [what, sql] :
         {std::pair<const char*, std::string>{"loader", s.cfg.loader}, {"warm", s.cfg.warm}}) {
      if (sql.empty())
        continue;
      try {
        c.prepare("sessiond_check_" + ns + "_" + what, sql); // prepared only: nothing runs
      } catch (const postgres::pg_error& e) {
        throw std::runtime_error("cache.namespaces." + ns + "." + what +
                                 " does not prepare: " + e.what());
      }
    }
  }
}

std::shared_ptr<api::cache_routes> cache_service::routes() const {
  return impl_->routes;
}

std::vector<actors::supervisor_options::extra_child> cache_service::children() {
  std::vector<actors::supervisor_options::extra_child> out;
  for (const auto& [ns, s] : impl_->env->spaces) {
    if (s.cfg.loader.empty())
      continue;
    out.push_back({"cache_loader " + ns, [this, ns = ns](caf::actor_system& sys) {
                     auto a = sys.spawn(actors::cache_loader, ns,
                                        std::shared_ptr<const actors::cache_env>(impl_->env));
                     std::lock_guard<std::mutex> guard{impl_->mtx};
                     impl_->loaders[ns] = a;
                     for (auto& l : impl_->pending[ns])
                       caf::anon_send(a, std::move(l));
                     impl_->held -= static_cast<std::int64_t>(impl_->pending[ns].size());
                     impl_->pending.erase(ns);
                     return caf::actor_cast<caf::strong_actor_ptr>(a);
                   }});
  }
  return out;
}

void cache_service::sample() {
  auto& d = *impl_;
  d.meters->degraded().Set(d.redis->connected() ? 0 : 1);
  for (auto& [ns, s] : d.env->spaces)
    s.meters->near_entries.Set(static_cast<double>(s.near->size()));
  if (d.samples++ % 5 == 0 && d.redis->connected() && !d.env->spaces.empty())
    d.read_memory();
}

json cache_service::status_json() const {
  auto& d = *impl_;
  return {{"degraded", !d.redis->connected()},
          {"subscribed", d.subscriber->subscribed()},
          {"redis_memory_used_ratio", d.memory_ratio.load()},
          {"undecryptable", d.store->undecryptable()},
          {"namespaces", api::cache_namespaces_json(*d.env)}};
}

bool cache_service::redis_up() const {
  return impl_->redis->connected();
}

std::string cache_service::readiness_detail() const {
  auto& d = *impl_;
  if (d.env->spaces.empty())
    return "no namespaces configured";
  if (!d.redis->connected())
    return "degraded: the cache's Redis is unreachable; reads go to the loaders, writes are "
           "skipped";
  if (!d.subscriber->subscribed())
    return "invalidation subscription down (" + d.subscriber->last_error() +
           "); near caches expire within near_ttl_ms";
  return {};
}

void cache_service::stop() {
  auto& d = *impl_;
  d.subscriber->stop();
  d.pool->stop();
  if (d.own_redis)
    d.own_redis->stop();
}

} // namespace sessiond::app
