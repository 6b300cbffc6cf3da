// Encryption at rest of values sessiond stores in Redis: the keyring read from
// encryption.keys_file (lines "key_id:base64(32 bytes)", the first one the current key) and the
// AES-256-GCM envelope a sealed value is stored as (docs/security.md "Encryption at rest").
// Key material never appears in an error text or a log line: only file names, line numbers,
// key ids and reasons. No CAF, no Redis.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace sessiond::crypto {

/// Why a value could not be opened, or a keys file was refused.
enum class errc {
  ok,
  key_missing,  ///< the envelope names a key id the keyring does not hold
  auth_failed,  ///< the tag does not verify: wrong associated data (a value copied), tampering
  malformed,    ///< starts like an envelope but is too short or its header is broken
  unreadable,   ///< keys file: cannot be opened or read
  no_keys,      ///< keys file: only comments and blank lines
  bad_line,     ///< keys file: not "key_id:base64"
  bad_key_id,   ///< keys file: id not 1-32 characters of [A-Za-z0-9._-]
  bad_base64,   ///< keys file: the key is not valid base64
  bad_length,   ///< keys file: the key does not decode to 32 bytes
  duplicate_id, ///< keys file: the same id twice
  internal,     ///< OpenSSL failed (out of memory, no entropy)
};
const char* to_string(errc e);

constexpr std::size_t key_bytes = 32;
constexpr std::size_t nonce_bytes = 12;
constexpr std::size_t tag_bytes = 16;
constexpr std::size_t max_key_id_chars = 32;
/// First byte of an envelope (format version 1). Plaintext JSON never starts with it: JSON text
/// starts with whitespace or a value, and 0xE1 is neither.
constexpr unsigned char envelope_v1 = 0xE1;

/// A keys file that cannot be used: one line naming the file, the line and the reason.
class key_file_error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// What open() found.
struct opened {
  errc code = errc::ok;
  std::string key_id;      ///< the envelope's key id (empty for plaintext)
  std::string plaintext;   ///< the value when code == ok
  bool was_sealed = false; ///< false: the stored value was plaintext, passed through
};

/// The keys of a node, immutable once built (any thread may seal and open while a reload builds
/// the next one).
class keyring {
public:
  /// Parses a keys file's text: "key_id:base64(32 bytes)" per line, blanks around ignored, '#'
  /// comment lines and blank lines skipped. Throws key_file_error "<reason> (line n)".
  static std::shared_ptr<const keyring> parse(std::string_view text);
  /// The file at `path` read and parsed; throws key_file_error naming the file.
  static std::shared_ptr<const keyring> load_file(const std::string& path);

  /// The id new values are sealed under (the file's first key).
  const std::string& current_id() const { return keys_.front().id; }
  /// Every id, current first.
  std::vector<std::string> ids() const;
  bool has(std::string_view id) const { return find(id) != nullptr; }

  /// `plaintext` sealed under the current key with a fresh random nonce; `aad` (e.g. the
  /// session id) is authenticated, not stored. Throws std::runtime_error when OpenSSL fails.
  std::string seal(std::string_view aad, std::string_view plaintext) const;
  /// Opens `stored`: an envelope is decrypted and verified against `aad`; anything else is
  /// plaintext and passed through (was_sealed false).
  opened open(std::string_view aad, std::string_view stored) const;

private:
  struct key {
    std::string id;
    std::array<unsigned char, key_bytes> bytes;
  };
  const key* find(std::string_view id) const;
  std::vector<key> keys_;
};

/// Whether `stored` is an envelope (any version sessiond knows).
inline bool is_envelope(std::string_view stored) {
  return !stored.empty() && static_cast<unsigned char>(stored[0]) == envelope_v1;
}
/// The key id an envelope names (empty for plaintext or a header too short to name one).
std::string_view envelope_key_id(std::string_view stored);
/// Opens `stored` without a keyring: plaintext passes, an envelope reports key_missing.
opened open_without_keys(std::string_view stored);

/// The keyring in use, swapped whole on reload; null when encryption is off.
class keyring_holder {
public:
  std::shared_ptr<const keyring> get() const {
    std::lock_guard<std::mutex> guard{mtx_};
    return keys_;
  }
  void replace(std::shared_ptr<const keyring> k) {
    std::lock_guard<std::mutex> guard{mtx_};
    keys_ = std::move(k);
  }

private:
  mutable std::mutex mtx_; ///< held to copy the pointer only
  std::shared_ptr<const keyring> keys_;
};

/// Strict base64 (standard alphabet, '=' padding required); false on any other input.
bool base64_decode(std::string_view in, std::string& out);
std::string base64_encode(std::string_view in);

} // namespace sessiond::crypto
