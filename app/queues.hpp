// The job queue as one capability of the node: its Redis (the node's, or redis.queue_url), the
// store, the parked long-poll leases, the webhook client, the API routes, and the actors the
// supervisor runs (a queue_keeper, a queue_manager per queue with built-in handlers). The node
// makes one, hands its routes to the API and its children to the supervisor, and drains it on
// SIGTERM.
#pragma once

#include "actors/supervisor.hpp"
#include "adapters/redis/client.hpp"
#include "api/queue_routes.hpp"
#include "app/capability.hpp"
#include "app/status_history.hpp"
#include "config/config.hpp"
#include "model/ttl.hpp"

#include <caf/fwd.hpp>
#include <nlohmann/json.hpp>

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace sessiond::app {

using queue_deps = capability_deps; ///< redis: the node's client, unless redis.queue_url is set

class queue_service {
public:
  /// Builds everything; nothing talks to Redis yet. Throws std::runtime_error (a bad
  /// redis.queue_url, an unreadable CA file).
  explicit queue_service(queue_deps deps);
  ~queue_service();
  queue_service(const queue_service&) = delete;
  queue_service& operator=(const queue_service&) = delete;

  /// Starts the queue's own Redis client, if it has one (before the loops run).
  void start_client();
  /// With the loops running: reads the queue Redis' maxmemory-policy; anything but noeviction
  /// is logged as an error (and refused, throwing, with queues.require_noeviction).
  void check_redis();
  std::shared_ptr<api::queue_routes> routes() const;
  /// The keeper and the managers, for the supervisor.
  std::vector<actors::supervisor_options::extra_child> children();
  /// Once a second: samples the counters for the rates of /v1/status.
  void sample();
  /// Each queue's depth (waiting, delayed, active) and failed attempts per second, for the status
  /// page's charts.
  std::map<std::string, history_point::queue_figures> history_figures() const;
  /// The "queues" member of /v1/status.
  nlohmann::json status_json() const;
  /// /readyz: the queue's Redis (not required for sessions: its detail says what is wrong).
  bool redis_up() const;
  std::string readiness_detail() const;
  /// SIGTERM: parked leases answer at once; the managers stop leasing, let running jobs finish
  /// up to queues.shutdown_grace_ms and give the rest back. Blocks until they did.
  void drain(caf::actor_system& sys);
  /// Stops the webhook client and the queue's own Redis client.
  void stop();

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace sessiond::app
