// The session_shard actor: owns the Redis keys of one slice of session ids (see
// messages/session.hpp for its interface).
#pragma once

#include "actors/shard_env.hpp"
#include "messages/session.hpp"

#include <deque>
#include <memory>
#include <string>
#include <unordered_map>

namespace sessiond::actors {

struct shard_state {
  std::size_t index = 0;
  std::shared_ptr<const shard_env> env;
  /// Keys with a PATCH in flight, each with the PATCHes queued behind it (arrival order).
  std::unordered_map<std::string, std::deque<messages::session_op>> busy;
  static inline const char* name = "session_shard";
};

messages::shard_actor::behavior_type
session_shard(messages::shard_actor::stateful_pointer<shard_state> self, std::size_t index,
              std::shared_ptr<const shard_env> env);

/// Starts a GET, PUT or DELETE at once from the calling thread: one command on shard `index`'s
/// Redis connection, completed on the I/O thread that receives the reply. False for the other
/// kinds (PATCH needs the shard actor), and then `op` is left as it was.
bool start_single(const std::shared_ptr<const shard_env>& env, std::size_t index,
                  messages::session_op& op);

/// The 503 answer to an op whose Redis command failed (transport error or error reply); counts it.
messages::session_result redis_failure(const shard_env& env, redis::errc e, const redis::reply& r);

/// HMGET `key` v u st ca la ex ttl d t: the read whose reply parse_session_fields parses.
std::vector<std::string> session_read_args(const std::string& key);
/// Reads the 9 fields of HMGET v u st ca la ex ttl d t into `out`. False when the key is
/// missing or the reply is malformed.
bool parse_session_fields(const redis::reply& r, model::session& out);

} // namespace sessiond::actors
