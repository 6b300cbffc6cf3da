// The cache's Redis side: one key per cached value, `<prefix>c{<ns>:<key>}` (a hash tag per key,
// so Redis Cluster spreads a namespace over every shard), a load lock `<prefix>cl{<ns>:<key>}`
// in the same slot, and invalidations published on `<prefix>cache:invalidate`. Every call is
// asynchronous on the client's I/O threads; every change is one command or one script.
#pragma once

#include "adapters/redis/client.hpp"
#include "model/cache.hpp"

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace sessiond::crypto {
class keyring_holder;
} // namespace sessiond::crypto

namespace sessiond::cache {

/// What an invalidation message says: one key, or every key with a prefix (empty: all).
struct invalidation {
  bool prefix = false;
  std::string ns;
  std::string key; ///< the key, or the prefix
};
std::string encode(const invalidation& m);
/// False on a message this version does not know (it is then ignored).
bool decode(std::string_view payload, invalidation& out);

class store {
public:
  /// ok false: Redis failed (down, timeout, error reply); `error` says how.
  using done_fn = std::function<void(bool ok, const std::string& error)>;
  using get_fn = std::function<void(bool ok, std::optional<model::cache_entry> entry)>;
  using count_fn = std::function<void(bool ok, std::int64_t n, const std::string& error)>;
  using lock_fn = std::function<void(bool ok, bool got)>;

  store(redis::client& redis, std::string key_prefix);

  std::string value_key(std::string_view ns, std::string_view key) const;
  std::string lock_key(std::string_view ns, std::string_view key) const;
  const std::string& channel() const { return channel_; }

  /// GET; an entry that does not decode counts as absent.
  void get(std::size_t hint, std::string_view ns, std::string_view key, get_fn cb);
  /// SET … PX keep_ms (fresh time plus stale_if_error); with `publish`, in the same script, an
  /// invalidation of the key for the other nodes' near caches.
  void put(std::size_t hint, std::string_view ns, std::string_view key, const model::cache_entry& e,
           std::int64_t keep_ms, bool publish, done_fn cb);
  /// DEL and PUBLISH in one script; n: keys removed (0 or 1).
  void invalidate(std::size_t hint, std::string_view ns, std::string_view key, count_fn cb);
  /// SCAN MATCH … COUNT batch, UNLINK of each batch's keys (one command per key, each in its own
  /// slot), until the scan ends; then one PUBLISH of the prefix. n: keys removed.
  void invalidate_prefix(std::size_t hint, std::string_view ns, std::string_view prefix,
                         std::int64_t batch, count_fn cb);
  /// SET NX PX: got is true when this caller holds the load lock now.
  void try_lock(std::size_t hint, std::string_view ns, std::string_view key,
                const std::string& token, std::int64_t lock_ms, lock_fn cb);
  /// Deletes the lock if it still holds `token` (one script). Fire and forget.
  void unlock(std::size_t hint, std::string_view ns, std::string_view key,
              const std::string& token);

  /// Encryption at rest (encryption.keys_file): every value put is sealed under the holder's
  /// current key with "cache:<ns>:<key>" as associated data, and every value got is opened
  /// (plaintext passes through). A value that does not open (its key is missing, or it was copied
  /// from another key) counts as absent, as an entry that does not decode always has: a cache
  /// value is reloaded or rewritten, never served as garbage. Null (the default): plaintext, and
  /// a sealed value does not decode. `keys` outlives the store; set before the first call.
  void seal_with(const crypto::keyring_holder* keys) { keys_ = keys; }
  /// Values read that did not open.
  std::uint64_t undecryptable() const { return undecryptable_->load(); }

private:
  const crypto::keyring_holder* keys_ = nullptr;
  std::shared_ptr<std::atomic<std::uint64_t>> undecryptable_ =
      std::make_shared<std::atomic<std::uint64_t>>(0);
  redis::client& redis_;
  std::string prefix_;
  std::string channel_;
};

} // namespace sessiond::cache
