// The Lua scripts that make each session write one atomic Redis step: version check, write,
// user index, dirty mark. Key layout (prefix P, default "sessiond:"):
//   P s:<id>      hash  v u st ca la ex ttl d t [rv] [pb]   one session (st: A active, R revoked;
//                 pb: the last repair note put back)
//   P u:<uid>     zset  member session id, score expires_ms    the user's sessions
//   P dirty:<n>   zset  member session id, score first-dirty ms  shard n's unsynced writes
//   P sync:lease:<n>  string  node id, PX                   which node syncs dirty set n now
#pragma once

#include "adapters/redis/client.hpp"

namespace sessiond::actors {

/// The scripts, loaded once per node (EVALSHA, reloaded on NOSCRIPT by the client).
struct redis_scripts {
  redis::script write;        ///< PUT and PATCH: conditional replace
  redis::script revoke;       ///< DELETE: versioned tombstone
  redis::script touch;        ///< slide the idle TTL when the version is unchanged
  redis::script list_user;    ///< a user's live sessions, trimming dead ids from the index
  redis::script sync_read;    ///< the oldest dirty ids of one dirty set with their fields
  redis::script sync_ack;     ///< clear dirty marks of sessions unchanged since sync_read
  redis::script sync_repair;  ///< move a session past PostgreSQL's version after Redis lost it
  redis::script sync_reject;  ///< move marks of rows PostgreSQL refused into the rejected hash
  redis::script sync_requeue; ///< mark every rejected session dirty again
  redis::script restore;      ///< read-through: put a PostgreSQL row back if the key is absent
  redis::script mirror;       ///< copy a row written in PostgreSQL first (shadow, redis-read)
  redis::script put_back;     ///< repair a session written in PostgreSQL while Redis was down
  redis_scripts();
};

/// Codes the scripts return in their first element besides HTTP successes.
enum script_code : long long {
  code_precondition_failed = -412,
  code_gone = -410,
  code_not_found = -404,
};

} // namespace sessiond::actors
