// What the cache's routes and actors share: the store, the PostgreSQL pool its loaders run on,
// each namespace's settings, near cache and meters, and how an entry is made and written.
// Built once by the node (app/cache); the namespaces' map is not changed afterwards.
#pragma once

#include "adapters/cache/cache_metrics.hpp"
#include "adapters/cache/near_cache.hpp"
#include "adapters/cache/store.hpp"
#include "adapters/postgres/pool.hpp"
#include "config/config.hpp"
#include "model/cache.hpp"
#include "model/ttl.hpp"

#include <functional>
#include <map>
#include <memory>
#include <string>

namespace sessiond::actors {

/// One namespace.
struct cache_space {
  std::string name;
  config::cache_namespace cfg;
  std::unique_ptr<cache::near_cache> near;
  cache::cache_meters* meters = nullptr;
  std::string statement; ///< the loader's prepared-statement name
};

struct cache_env {
  cache::store* store = nullptr;
  postgres::pool* pool = nullptr;
  const model::clock* clock = nullptr;
  const config::cache_section* cfg = nullptr;
  std::string node_id;
  std::map<std::string, cache_space> spaces;
  /// True while the cache's Redis has a connection up.
  std::function<bool()> redis_up;
  /// Why a cache write must be skipped now: "redis_down", "memory" (past
  /// cache.max_redis_memory_ratio), or empty.
  std::function<std::string()> write_refusal;
  /// level ("info", "warn", "error") and one line.
  std::function<void(const std::string&, const std::string&)> log;

  const cache_space* space(const std::string& ns) const;
};

/// A value to cache in `s` now: fresh for its TTL with jitter (ttl_ms > 0 overrides the
/// namespace's, as a PUT's ?ttl_s does), or for negative_ttl_s when `negative`.
model::cache_entry make_entry(const cache_space& s, bool negative, std::string value,
                              std::int64_t now_ms, std::int64_t delta_ms, std::int64_t ttl_ms = 0);

/// How long Redis keeps `e`: its fresh time, plus stale_if_error_s when the namespace has a
/// loader to fail (a value past its TTL is served only then).
std::int64_t keep_ms(const cache_space& s, const model::cache_entry& e);

/// Writes `e` of a load to Redis (unless the write must be skipped: counted) and the near cache;
/// `done` runs once Redis answered or the write was skipped, on any thread.
void store_loaded(const cache_env& env, const cache_space& s, const std::string& key,
                  std::shared_ptr<const model::cache_entry> e, std::function<void()> done);

/// Uniform in [0, 1) from a per-thread generator.
double unit_random();

} // namespace sessiond::actors
