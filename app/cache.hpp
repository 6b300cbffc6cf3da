// The cache as one capability of the node: its Redis (the node's, or redis.cache_url), the store,
// the invalidation subscriber, the PostgreSQL pool its loaders run on, each namespace's near
// cache and meters, the API routes, and the cache_loader actors the supervisor runs. The node
// makes one, hands its routes to the API and its children to the supervisor.
#pragma once

#include "actors/supervisor.hpp"
#include "adapters/redis/client.hpp"
#include "api/cache_routes.hpp"
#include "app/capability.hpp"
#include "config/config.hpp"
#include "model/ttl.hpp"

#include <caf/fwd.hpp>
#include <nlohmann/json.hpp>

#include <memory>
#include <string>
#include <vector>

namespace sessiond::app {

using cache_deps = capability_deps; ///< redis: the node's client, unless redis.cache_url is set

class cache_service {
public:
  /// Builds everything; nothing talks to Redis or PostgreSQL yet. Throws std::runtime_error (a
  /// bad redis.cache_url).
  explicit cache_service(cache_deps deps);
  ~cache_service();
  cache_service(const cache_service&) = delete;
  cache_service& operator=(const cache_service&) = delete;

  /// Starts the cache's own Redis client, if it has one, and the subscriber.
  void start_client();
  /// Prepares every namespace's loader (and warm query) once on a PostgreSQL connection; throws
  /// std::runtime_error naming the first one that does not prepare. Skipped with no loaders.
  void check_loaders();
  std::shared_ptr<api::cache_routes> routes() const;
  /// A cache_loader per namespace with a loader, for the supervisor.
  std::vector<actors::supervisor_options::extra_child> children();
  /// Once a second: gauges (degraded, subscription, near-cache sizes) and, every 5 s, the cache
  /// Redis' memory for the write guard.
  void sample();
  /// The "cache" member of /v1/status.
  nlohmann::json status_json() const;
  /// /readyz: the cache's Redis and subscription (never required: reads go to the loaders).
  bool redis_up() const;
  std::string readiness_detail() const;
  /// Stops the subscriber, the pool and the cache's own Redis client.
  void stop();

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace sessiond::app
