// The session_router actor: maps each session id to its shard (model::shard_for) and runs the
// user-wide operations (list, revoke all) by asking the owning shards.
#pragma once

#include "actors/shard_env.hpp"
#include "messages/session.hpp"

#include <memory>
#include <vector>

namespace sessiond::actors {

struct router_state {
  std::vector<messages::shard_actor> shards;
  std::shared_ptr<const shard_env> env;
  static inline const char* name = "session_router";
};

messages::router_actor::behavior_type
session_router(messages::router_actor::stateful_pointer<router_state> self,
               std::vector<messages::shard_actor> shards, std::shared_ptr<const shard_env> env);

} // namespace sessiond::actors
