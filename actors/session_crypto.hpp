// Encryption at rest of session data (encryption.keys_file; docs/security.md "Encryption at
// rest"): the keyring the node loaded, shared by the shards, the listing, the sync and the
// rotation pass, with the counters /metrics and /v1/status show. Without a keyring, values are
// written as plaintext and an envelope found in Redis reports its key missing.
#pragma once

#include "adapters/crypto/keyring.hpp"

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

namespace sessiond::actors {

/// Values per key id found by the last complete rotation pass.
struct rotation_counts {
  std::map<std::string, std::uint64_t> by_key; ///< key id → values sealed under it
  std::uint64_t plaintext = 0;                 ///< values not encrypted
  std::uint64_t scanned = 0;                   ///< session keys the pass looked at
  std::int64_t finished_ms = 0;                ///< when the pass ended (0: none finished yet)
};

struct session_crypto {
  crypto::keyring_holder keys;
  mutable std::atomic<std::uint64_t> key_missing{0}; ///< values that named a key not in the keyring
  mutable std::atomic<std::uint64_t> auth_failed{0}; ///< values whose tag did not verify
  std::atomic<std::uint64_t> rotated{0};             ///< values the pass re-encrypted
  std::atomic<std::uint64_t> rotate_conflicts{0}; ///< re-encryptions a concurrent write fenced off
  std::atomic<std::uint64_t> passes{0};           ///< complete rotation passes

  /// Associated data of a session's value: the value only opens under its own session id.
  static std::string aad(std::string_view id) { return "session:" + std::string(id); }
  bool enabled() const { return keys.get() != nullptr; }
  /// `plaintext` sealed under the current key for session `id`; unchanged when encryption is off.
  std::string seal(std::string_view id, std::string_view plaintext) const {
    auto k = keys.get();
    return k ? k->seal(aad(id), plaintext) : std::string(plaintext);
  }
  /// The stored value of session `id` opened (plaintext passes through); failures are counted.
  crypto::opened open(std::string_view id, std::string_view stored) const {
    auto k = keys.get();
    auto o = k ? k->open(aad(id), stored) : crypto::open_without_keys(stored);
    if (o.code == crypto::errc::key_missing)
      key_missing.fetch_add(1, std::memory_order_relaxed);
    else if (o.code != crypto::errc::ok)
      auth_failed.fetch_add(1, std::memory_order_relaxed);
    return o;
  }
  /// The key ids the write script lets a write replace, space separated ("" without a keyring).
  std::string known_ids() const {
    auto k = keys.get();
    std::string out;
    if (k)
      for (const auto& id : k->ids())
        out += (out.empty() ? "" : " ") + id;
    return out;
  }
  rotation_counts last_pass() const {
    std::lock_guard<std::mutex> guard{mtx_};
    return last_;
  }
  void set_last_pass(rotation_counts c) {
    std::lock_guard<std::mutex> guard{mtx_};
    last_ = std::move(c);
  }

private:
  mutable std::mutex mtx_;
  rotation_counts last_;
};

/// The problem detail of a session value that did not open (names the key id, never the value).
inline std::string open_failure_detail(const crypto::opened& o) {
  if (o.code == crypto::errc::key_missing)
    return "the session's data is encrypted under key \"" + o.key_id +
           "\", which is not in encryption.keys_file; nothing was changed";
  return "the session's data under key \"" + o.key_id + "\" " + crypto::to_string(o.code) +
         "; it is not served and nothing was changed";
}

} // namespace sessiond::actors
