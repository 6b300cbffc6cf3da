// See cache_env.hpp.
#include "actors/cache/cache_env.hpp"

#include <random>

namespace sessiond::actors {

const cache_space* cache_env::space(const std::string& ns) const {
  auto it = spaces.find(ns);
  return it == spaces.end() ? nullptr : &it->second;
}

double unit_random() {
  thread_local std::mt19937_64 gen{std::random_device{}()};
  return std::uniform_real_distribution<double>(0.0, 1.0)(gen);
}

model::cache_entry make_entry(const cache_space& s, bool negative, std::string value,
                              std::int64_t now_ms, std::int64_t delta_ms, std::int64_t ttl_ms) {
  model::cache_entry e;
  e.negative = negative;
  e.stored_ms = now_ms;
  e.delta_ms = delta_ms;
  auto base_ms = negative ? s.cfg.negative_ttl_s * 1000 : ttl_ms > 0 ? ttl_ms : s.cfg.ttl_s * 1000;
  e.fresh_until_ms = now_ms + model::jittered_ttl_ms(base_ms, s.cfg.jitter_ratio, unit_random());
  if (!negative) {
    e.etag = model::cache_etag(value);
    e.value = std::move(value);
  }
  return e;
}

std::int64_t keep_ms(const cache_space& s, const model::cache_entry& e) {
  auto fresh = e.fresh_until_ms - e.stored_ms;
  return fresh + (s.cfg.loader.empty() || e.negative ? 0 : s.cfg.stale_if_error_s * 1000);
}

void store_loaded(const cache_env& env, const cache_space& s, const std::string& key,
                  std::shared_ptr<const model::cache_entry> e, std::function<void()> done) {
  s.near->put(key, e, env.clock->now_ms());
  auto refusal = env.write_refusal ? env.write_refusal() : std::string();
  if (!refusal.empty()) {
    (refusal == "memory" ? s.meters->skipped_memory : s.meters->skipped_redis_down).Increment();
    return done();
  }
  env.store->put(0, s.name, key, *e, keep_ms(s, *e), false,
                 [done = std::move(done)](bool, const std::string&) { done(); });
}

} // namespace sessiond::actors
