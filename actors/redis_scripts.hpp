// The Lua scripts that make each session write one atomic Redis step: version check, write,
// dirty mark, all in the session's slot (model/key_layout.hpp has the key layout). The user
// index, in the user's slot, is written by a second step (index_add) after a session is created.
#pragma once

#include "adapters/redis/client.hpp"

namespace sessiond::actors {

/// The scripts, loaded once per node (EVALSHA, reloaded on NOSCRIPT by the client).
struct redis_scripts {
  redis::script write;       ///< PUT and PATCH: conditional replace
  redis::script revoke;      ///< DELETE: versioned tombstone
  redis::script touch;       ///< slide the idle TTL when the version is unchanged
  redis::script list_index;  ///< a user's session ids, trimming those too old to be live
  redis::script index_add;   ///< add a session to its user's index
  redis::script sync_read;   ///< the oldest dirty ids of one dirty set with their fields
  redis::script sync_ack;    ///< clear dirty marks of sessions unchanged since sync_read
  redis::script sync_repair; ///< move a session past PostgreSQL's version after Redis lost it
  redis::script sync_reject; ///< clear marks of rows PostgreSQL refused (recorded already)
  redis::script restore;     ///< read-through: put a PostgreSQL row back if the key is absent
  redis::script mirror;      ///< copy a row written in PostgreSQL first (shadow, redis-read)
  redis::script put_back;    ///< repair a session written in PostgreSQL while Redis was down
  redis::script upgrade_in;  ///< layout 1 -> 2: copy a session to its new key
  redis::script upgrade_out; ///< layout 1 -> 2: delete the old key once copied
  redis::script reseal;      ///< rotation: re-encrypt a value if the session did not change
  redis_scripts();
};

/// Codes the scripts return in their first element besides HTTP successes.
enum script_code : long long {
  code_precondition_failed = -412,
  code_absent = -409, ///< write: no key of layout 2, and one of layout 1 may exist
  code_gone = -410,
  code_not_found = -404,
  code_key_missing = -500, ///< write: the stored value is sealed under a key the node lacks
};

} // namespace sessiond::actors
