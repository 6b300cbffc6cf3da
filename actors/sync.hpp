// The sync actor (see messages/sync.hpp for its interface). It runs detached: the PostgreSQL
// calls of a run block its own thread, never the scheduler's.
#pragma once

#include "actors/sync_engine.hpp"
#include "messages/sync.hpp"
#include "model/backoff.hpp"

#include <caf/fwd.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <random>
#include <string>

namespace sessiond::actors {

struct sync_options {
  std::chrono::milliseconds interval{60000};
  std::chrono::milliseconds tick{1000}; ///< how often the backlog is checked against max_dirty
  std::int64_t max_dirty = 100000;
  model::backoff_policy backoff{500, 60000};
  std::int64_t circuit_threshold = 3; ///< failures in a row that open the circuit
  std::function<void(std::string level, std::string line)> log;
  /// Called after every run (on the sync actor's thread).
  std::function<void(const messages::sync_report&)> on_run;
};

struct sync_state {
  std::shared_ptr<sync_engine> engine;
  std::shared_ptr<sync_options> opts;
  std::shared_ptr<messages::sync_status> status;
  const model::clock* clock = nullptr;
  model::circuit_breaker circuit{{}, 3};
  std::int64_t next_run_ms = 0;
  std::mt19937_64 random{std::random_device{}()};
  static inline const char* name = "sync";
};

messages::sync_actor::behavior_type sync(messages::sync_actor::stateful_pointer<sync_state> self,
                                         std::shared_ptr<sync_engine> engine,
                                         std::shared_ptr<sync_options> opts,
                                         std::shared_ptr<messages::sync_status> status,
                                         const model::clock* clock);

/// Spawns the sync actor detached; it owns `engine` and starts ticking at once.
messages::sync_actor spawn_sync(caf::actor_system& sys, std::shared_ptr<sync_engine> engine,
                                std::shared_ptr<sync_options> opts,
                                std::shared_ptr<messages::sync_status> status,
                                const model::clock& clock);

} // namespace sessiond::actors
