// The supervisor actor: spawns the shards and the router, monitors them, restarts a crashed one
// with exponential backoff, and escalates when a child keeps crashing.
#pragma once

#include "actors/shard_env.hpp"
#include "messages/supervisor.hpp"

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace sessiond::actors {

struct supervisor_options {
  std::size_t shards = 16;
  std::chrono::milliseconds backoff_min{20};
  std::chrono::milliseconds backoff_max{5000};
  /// More restarts than this within `window` escalates (the node stops with an error).
  int max_restarts = 50;
  std::chrono::milliseconds window{60000};
  /// Called (on the supervisor's thread) with the new router after each (re)start.
  std::function<void(messages::router_actor)> on_router;
  /// Called (on the supervisor's thread) with shard i's new handle after each (re)start.
  std::function<void(std::size_t, messages::shard_actor)> on_shard;
  /// More children (the sync and retention actors), supervised like the session actors:
  /// child index shards + 1 + i. `spawn` starts one (detached, typically) and hands its new
  /// handle to whoever sends to it; it runs on the supervisor's thread.
  struct extra_child {
    std::string name;
    std::function<caf::strong_actor_ptr(caf::actor_system&)> spawn;
  };
  std::vector<extra_child> extra;
  /// Called once when the supervisor gives up.
  std::function<void(std::string)> on_escalate;
  /// Called on each restart with a line to log.
  std::function<void(std::string)> log;
};

struct child_record {
  std::chrono::steady_clock::time_point started;
  std::chrono::milliseconds backoff{0};
};

struct supervisor_state {
  std::shared_ptr<const shard_env> env;
  std::shared_ptr<const supervisor_options> opts;
  std::vector<messages::shard_actor> shards;
  messages::router_actor router;
  std::vector<caf::strong_actor_ptr> extra; ///< handles of opts->extra, same order
  std::vector<child_record> children;       ///< shards 0..n-1, router n, extra n+1…
  std::vector<std::chrono::steady_clock::time_point> restarts; ///< within the window
  bool escalated = false;
  static inline const char* name = "supervisor";
};

messages::supervisor_actor::behavior_type
supervisor(messages::supervisor_actor::stateful_pointer<supervisor_state> self,
           std::shared_ptr<const shard_env> env, std::shared_ptr<const supervisor_options> opts);

/// Next backoff after a crash: doubles from min up to max; back to min when the child had run
/// longer than max before crashing.
std::chrono::milliseconds next_backoff(std::chrono::milliseconds previous,
                                       std::chrono::milliseconds ran_for,
                                       std::chrono::milliseconds min,
                                       std::chrono::milliseconds max);

} // namespace sessiond::actors
