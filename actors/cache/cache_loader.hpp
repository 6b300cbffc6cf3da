// cache_loader: one namespace's loads on one node (see messages/cache.hpp). A read that found no
// fresh value joins the flight of its key, or starts one: take the key's Redis lock (SET NX PX,
// cache.lock_ms), look once more (another node may have just stored it), run the loader on the
// PostgreSQL pool, store the value, answer every waiter. A node that finds the lock taken looks
// in Redis every cache.lock_poll_ms until the value lands or the lock's time is up, then loads
// itself. With Redis down it loads straight away. A failed load serves what Redis still holds up
// to stale_if_error_s past its TTL, else 503.
#pragma once

#include "actors/cache/cache_env.hpp"
#include "messages/cache.hpp"

#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace sessiond::actors {

struct cache_flight {
  std::vector<messages::cache_completion_ptr> waiters;
  messages::cache_entry_ptr stale;  ///< what Redis held past its TTL, if anything
  messages::cache_entry_ptr result; ///< loaded; the flight ends when it is stored
  bool locked = false;              ///< this node holds the key's Redis lock
  bool loading = false;             ///< the statement is queued or running
  std::int64_t lock_deadline_ms = 0;
};

struct cache_loader_state {
  std::shared_ptr<const cache_env> env;
  const cache_space* space = nullptr;
  std::string token; ///< this loader's lock value: node id and a random part
  std::map<std::string, cache_flight> flights;
  std::int64_t last_log_ms = INT64_MIN / 2; ///< a failed load is logged at most every 10 s
  std::int64_t unlogged = 0;
  static inline const char* name = "cache_loader";
};

messages::cache_loader_actor::behavior_type
cache_loader(messages::cache_loader_actor::stateful_pointer<cache_loader_state> self,
             std::string ns, std::shared_ptr<const cache_env> env);

/// What a loader's statement returned, checked: a JSON value within max_value_bytes (compacted),
/// no row (a negative entry), or an error naming what was wrong.
messages::cache_loaded check_loaded(const std::string& key, const std::optional<std::string>& row,
                                    bool has_row, std::size_t max_value_bytes);

} // namespace sessiond::actors
