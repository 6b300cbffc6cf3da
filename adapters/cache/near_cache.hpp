// The in-process LRU in front of Redis, one per namespace: at most `capacity` entries, each kept
// `ttl_ms` at most (the bound on how stale a node can serve after another node's invalidation if
// the pub/sub message never came). Sixteen stripes, each with its own lock and LRU list, so the
// I/O threads rarely contend. Values are shared, never copied under a lock.
#pragma once

#include "model/cache.hpp"

#include <array>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace sessiond::cache {

class near_cache {
public:
  using entry_ptr = std::shared_ptr<const model::cache_entry>;

  /// capacity 0: off (get finds nothing, put keeps nothing).
  near_cache(std::size_t capacity, std::int64_t ttl_ms);

  /// The entry, if kept and younger than ttl_ms at `now_ms` (an older one is dropped).
  entry_ptr get(const std::string& key, std::int64_t now_ms);
  void put(const std::string& key, entry_ptr e, std::int64_t now_ms);
  void erase(const std::string& key);
  /// Drops every key starting with `prefix` (empty: all); returns how many.
  std::size_t erase_prefix(std::string_view prefix);
  void clear() { erase_prefix({}); }
  std::size_t size() const;
  bool enabled() const { return per_stripe_ > 0; }

private:
  struct slot {
    std::string key;
    entry_ptr entry;
    std::int64_t kept_at_ms = 0;
  };
  struct stripe {
    mutable std::mutex mtx;
    std::list<slot> lru; ///< most recently used first
    std::unordered_map<std::string_view, std::list<slot>::iterator> index;
  };
  stripe& stripe_of(const std::string& key);

  std::size_t per_stripe_;
  std::int64_t ttl_ms_;
  std::array<stripe, 16> stripes_;
};

} // namespace sessiond::cache
