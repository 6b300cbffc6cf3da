// Layout 1 -> 2 (model/key_layout.hpp): moves one session from its old key to its new one, read
// old, write new, delete old only if unchanged. Used on access (a miss in layout 2 while keys of
// layout 1 may exist) and by the sync's background pass. Without CAF: callbacks on Redis I/O
// threads.
#pragma once

#include "actors/redis_scripts.hpp"
#include "adapters/redis/client.hpp"
#include "model/key_layout.hpp"

#include <cstdint>
#include <functional>
#include <string>

namespace sessiond::actors {

struct upgrade_context {
  redis::client* redis = nullptr;
  const redis_scripts* scripts = nullptr;
  model::key_layout keys;
  std::int64_t max_lifetime_ms = 604800000;
};

/// What happened to one session.
enum class upgrade_outcome {
  absent, ///< no key of layout 1 (nothing to do)
  moved,  ///< copied into layout 2 (marked dirty, indexed) and the old key deleted
  kept,   ///< layout 2 had it already; the old key deleted if unchanged
  failed, ///< Redis failed; nothing lost, the old key stays
};

/// Moves session `id`; `done` runs once, on a Redis I/O thread.
void upgrade_session(const upgrade_context& c, std::size_t hint, const std::string& id,
                     std::int64_t now_ms, std::function<void(upgrade_outcome)> done);

} // namespace sessiond::actors
