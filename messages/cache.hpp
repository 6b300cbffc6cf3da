// The cache's actors: a cache_loader per namespace runs its loads one per key at a time
// (single flight), behind a short Redis lock per key across nodes, and answers every reader that
// waited for it. Readers are HTTP requests, so results travel through a cache_completion.
#pragma once

#include "model/cache.hpp"

#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/atom.hpp>
#include <caf/typed_actor.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

namespace sessiond::messages {

using cache_entry_ptr = std::shared_ptr<const model::cache_entry>;

/// The outcome of one read. status: 200 (entry), 404 (a negative entry, or nothing and no loader),
/// 503 (the loader failed with nothing stale to serve, or overload).
struct cache_result {
  unsigned status = 503;
  cache_entry_ptr entry; ///< 200, and 404 from a negative entry
  model::cache_outcome outcome = model::cache_outcome::miss;
  std::string detail;
  std::int64_t retry_after_s = 0;
};

/// Receives one read's result exactly once, on any thread; destroyed without one (its loader
/// died), it answers 503, so no request hangs.
class cache_completion {
public:
  virtual ~cache_completion() = default;
  void complete(cache_result&& r) {
    if (!done_.exchange(true))
      on_complete(std::move(r));
  }

protected:
  void complete_if_pending() {
    if (!done_.load()) {
      cache_result r;
      r.detail = "the cache loader handling this read stopped; retry";
      r.retry_after_s = 1;
      complete(std::move(r));
    }
  }
  virtual void on_complete(cache_result&& r) = 0;

private:
  std::atomic<bool> done_{false};
};
using cache_completion_ptr = std::shared_ptr<cache_completion>;

/// A read that found no fresh value: load `key` (or wait for its load). `stale` is what Redis
/// still holds past its TTL (served if the loader fails). Without `done`: an early refresh.
struct cache_load {
  std::string key;
  cache_completion_ptr done;
  cache_entry_ptr stale;
};

/// Replies from Redis and the PostgreSQL pool to the loader (its own messages).
struct cache_locked {
  std::string key;
  bool redis_ok = false;
  bool got = false;
};
struct cache_polled {
  std::string key;
  bool redis_ok = false;
  cache_entry_ptr entry;
};
/// The loaded value is in Redis (or its write was skipped or failed): the flight may end.
struct cache_stored {
  std::string key;
};
struct cache_loaded {
  std::string key;
  bool ok = false;    ///< the statement ran
  bool found = false; ///< it returned a row
  std::string value;  ///< compact JSON
  std::string error;
  std::int64_t duration_ms = 0;
};
using cache_poll_atom = caf::atom_constant<caf::atom("cpoll")>;

/// One namespace's loads.
using cache_loader_actor =
    caf::typed_actor<caf::reacts_to<cache_load>, caf::reacts_to<cache_locked>,
                     caf::reacts_to<cache_polled>, caf::reacts_to<cache_loaded>,
                     caf::reacts_to<cache_stored>, caf::reacts_to<cache_poll_atom, std::string>>;

} // namespace sessiond::messages

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(sessiond::messages::cache_load)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(sessiond::messages::cache_locked)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(sessiond::messages::cache_polled)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(sessiond::messages::cache_loaded)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(sessiond::messages::cache_stored)
