// See keyring.hpp. Envelope v1, stored as raw bytes (Redis values are binary safe):
//   0xE1 | id_len (1 byte) | key id | nonce (12) | ciphertext | tag (16)
// The GCM associated data is the header (0xE1, id_len, key id) followed by the caller's aad, so
// neither the key id nor the owner of a value can be changed without the tag failing.
#include "adapters/crypto/keyring.hpp"

#include "adapters/crypto/secret_file.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cstring>

namespace sessiond::crypto {

const char* to_string(errc e) {
  switch (e) {
  case errc::ok:
    return "ok";
  case errc::key_missing:
    return "the key it was encrypted under is not in the keyring";
  case errc::auth_failed:
    return "does not decrypt: the tag does not verify (a value copied from another owner, or "
           "changed)";
  case errc::malformed:
    return "is a broken envelope";
  case errc::unreadable:
    return "cannot be read";
  case errc::no_keys:
    return "holds no key (only comments and blank lines)";
  case errc::bad_line:
    return "holds a line that is not key_id:base64";
  case errc::bad_key_id:
    return "holds a key id that is not 1-32 characters of [A-Za-z0-9._-]";
  case errc::bad_base64:
    return "holds a key that is not valid base64";
  case errc::bad_length:
    return "holds a key that does not decode to 32 bytes";
  case errc::duplicate_id:
    return "holds the same key id twice";
  case errc::internal:
    return "OpenSSL failed";
  }
  return "unknown error";
}

namespace {

bool id_char(char ch) {
  return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
         ch == '.' || ch == '_' || ch == '-';
}

int b64_value(char ch) {
  if (ch >= 'A' && ch <= 'Z')
    return ch - 'A';
  if (ch >= 'a' && ch <= 'z')
    return ch - 'a' + 26;
  if (ch >= '0' && ch <= '9')
    return ch - '0' + 52;
  if (ch == '+')
    return 62;
  if (ch == '/')
    return 63;
  return -1;
}

[[noreturn]] void refuse(errc e, std::size_t line) {
  std::string what = to_string(e);
  if (line > 0)
    what += " (line " + std::to_string(line) + ")";
  throw key_file_error(what);
}

/// AES-256-GCM, fetched once: with OpenSSL 3, passing EVP_aes_256_gcm() to every init fetches
/// the implementation again each time, which cost more than the encryption itself (about 5 µs
/// of the 9 µs a 512-byte seal took).
const EVP_CIPHER* aes_gcm() {
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
  static EVP_CIPHER* c = EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
  return c != nullptr ? c : EVP_aes_256_gcm();
#else
  return EVP_aes_256_gcm();
#endif
}

/// A cipher context of this thread for one direction, keyed with the last key it was given: a
/// seal or open with the same key only sets the nonce (half the cost of a full init), and no call
/// allocates. Its copy of the key is cleansed when the thread ends.
class thread_cipher {
public:
  ~thread_cipher() {
    EVP_CIPHER_CTX_free(ctx_);
    OPENSSL_cleanse(key_.data(), key_.size());
  }
  /// The context ready for `key` and `nonce`; nullptr when OpenSSL failed.
  EVP_CIPHER_CTX* ready(bool encrypt, const unsigned char* key, const unsigned char* nonce) {
    if (ctx_ == nullptr && (ctx_ = EVP_CIPHER_CTX_new()) == nullptr)
      return nullptr;
    bool rekey = !keyed_ || CRYPTO_memcmp(key_.data(), key, key_.size()) != 0;
    int ok = rekey ? EVP_CipherInit_ex(ctx_, aes_gcm(), nullptr, key, nonce, encrypt ? 1 : 0)
                   : EVP_CipherInit_ex(ctx_, nullptr, nullptr, nullptr, nonce, encrypt ? 1 : 0);
    keyed_ = ok == 1;
    if (rekey && keyed_)
      std::memcpy(key_.data(), key, key_.size());
    return keyed_ ? ctx_ : nullptr;
  }

private:
  EVP_CIPHER_CTX* ctx_ = nullptr;
  std::array<unsigned char, key_bytes> key_{};
  bool keyed_ = false;
};

/// This thread's context for sealing (`encrypt`) or opening, ready for `key` and `nonce`.
EVP_CIPHER_CTX* thread_ctx(bool encrypt, const unsigned char* key, const unsigned char* nonce) {
  thread_local thread_cipher enc, dec;
  return (encrypt ? enc : dec).ready(encrypt, key, nonce);
}

/// A fresh random nonce. RAND_bytes costs about 2 µs a call with OpenSSL 3's locked DRBG, so each
/// thread draws 64 nonces at once and hands them out one by one (each used once, then wiped).
bool next_nonce(unsigned char* out) {
  constexpr std::size_t batch = 64;
  thread_local std::array<unsigned char, batch * nonce_bytes> pool;
  thread_local std::size_t left = 0;
  if (left == 0) {
    if (RAND_bytes(pool.data(), static_cast<int>(pool.size())) != 1)
      return false;
    left = batch;
  }
  --left;
  auto* n = pool.data() + left * nonce_bytes;
  std::memcpy(out, n, nonce_bytes);
  OPENSSL_cleanse(n, nonce_bytes);
  return true;
}

const unsigned char* bytes(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

} // namespace

bool base64_decode(std::string_view in, std::string& out) {
  out.clear();
  if (in.size() % 4 != 0)
    return false;
  for (std::size_t i = 0; i < in.size(); i += 4) {
    int v[4];
    int pad = 0;
    for (int k = 0; k < 4; ++k) {
      char ch = in[i + static_cast<std::size_t>(k)];
      if (ch == '=' && i + 4 == in.size() && k >= 2) {
        v[k] = 0;
        ++pad;
        continue;
      }
      if (pad > 0 || (v[k] = b64_value(ch)) < 0)
        return false;
    }
    unsigned n = (static_cast<unsigned>(v[0]) << 18) | (static_cast<unsigned>(v[1]) << 12) |
                 (static_cast<unsigned>(v[2]) << 6) | static_cast<unsigned>(v[3]);
    out.push_back(static_cast<char>((n >> 16) & 0xff));
    if (pad < 2)
      out.push_back(static_cast<char>((n >> 8) & 0xff));
    if (pad < 1)
      out.push_back(static_cast<char>(n & 0xff));
  }
  return true;
}

std::string base64_encode(std::string_view in) {
  static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  for (std::size_t i = 0; i < in.size(); i += 3) {
    unsigned n = static_cast<unsigned char>(in[i]) << 16;
    if (i + 1 < in.size())
      n |= static_cast<unsigned char>(in[i + 1]) << 8;
    if (i + 2 < in.size())
      n |= static_cast<unsigned char>(in[i + 2]);
    out.push_back(alphabet[(n >> 18) & 63]);
    out.push_back(alphabet[(n >> 12) & 63]);
    out.push_back(i + 1 < in.size() ? alphabet[(n >> 6) & 63] : '=');
    out.push_back(i + 2 < in.size() ? alphabet[n & 63] : '=');
  }
  return out;
}

std::shared_ptr<const keyring> keyring::parse(std::string_view text) {
  auto ring = std::make_shared<keyring>();
  for_each_secret_line(text, [&](std::size_t line_no, std::string_view line) {
    auto colon = line.find(':');
    if (colon == std::string_view::npos)
      refuse(errc::bad_line, line_no);
    auto id = trim_blanks(line.substr(0, colon));
    auto b64 = trim_blanks(line.substr(colon + 1));
    if (id.empty() || id.size() > max_key_id_chars || !std::all_of(id.begin(), id.end(), id_char))
      refuse(errc::bad_key_id, line_no);
    std::string raw;
    if (!base64_decode(b64, raw))
      refuse(errc::bad_base64, line_no);
    if (raw.size() != key_bytes) {
      wipe(raw);
      refuse(errc::bad_length, line_no);
    }
    if (ring->find(id) != nullptr)
      refuse(errc::duplicate_id, line_no);
    key k;
    k.id = std::string(id);
    std::memcpy(k.bytes.data(), raw.data(), key_bytes);
    wipe(raw);
    ring->keys_.push_back(std::move(k));
  });
  if (ring->keys_.empty())
    refuse(errc::no_keys, 0);
  return ring;
}

std::shared_ptr<const keyring> keyring::load_file(const std::string& path) {
  std::string text, why;
  if (!read_secret_file(path, text, why))
    throw key_file_error("keys file \"" + path + "\" " + to_string(errc::unreadable) + ": " + why);
  try {
    auto ring = parse(text);
    wipe(text);
    return ring;
  } catch (const key_file_error& e) {
    wipe(text);
    throw key_file_error("keys file \"" + path + "\" " + e.what());
  }
}

std::vector<std::string> keyring::ids() const {
  std::vector<std::string> out;
  for (const auto& k : keys_)
    out.push_back(k.id);
  return out;
}

const keyring::key* keyring::find(std::string_view id) const {
  for (const auto& k : keys_)
    if (k.id == id)
      return &k;
  return nullptr;
}

std::string keyring::seal(std::string_view aad, std::string_view plaintext) const {
  const auto& k = keys_.front();
  std::string out;
  out.reserve(2 + k.id.size() + nonce_bytes + plaintext.size() + tag_bytes);
  out.push_back(static_cast<char>(envelope_v1));
  out.push_back(static_cast<char>(k.id.size()));
  out += k.id;
  auto header = out.size();
  out.resize(header + nonce_bytes + plaintext.size() + tag_bytes);
  auto* p = reinterpret_cast<unsigned char*>(out.data());
  if (!next_nonce(p + header))
    throw std::runtime_error("encryption: RAND_bytes failed");
  auto* ctx = thread_ctx(true, k.bytes.data(), p + header);
  auto* ct = p + header + nonce_bytes;
  int len = 0;
  int fin = 0;
  bool ok =
      ctx != nullptr && EVP_EncryptUpdate(ctx, nullptr, &len, p, static_cast<int>(header)) == 1 &&
      EVP_EncryptUpdate(ctx, nullptr, &len, bytes(aad), static_cast<int>(aad.size())) == 1 &&
      EVP_EncryptUpdate(ctx, ct, &len, bytes(plaintext), static_cast<int>(plaintext.size())) == 1 &&
      EVP_EncryptFinal_ex(ctx, ct + len, &fin) == 1 &&
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, static_cast<int>(tag_bytes),
                          ct + plaintext.size()) == 1;
  if (!ok)
    throw std::runtime_error("encryption: OpenSSL failed to encrypt");
  return out;
}

std::string_view envelope_key_id(std::string_view stored) {
  if (!is_envelope(stored) || stored.size() < 2)
    return {};
  auto n = static_cast<unsigned char>(stored[1]);
  if (stored.size() < 2u + n)
    return {};
  return stored.substr(2, n);
}

opened open_without_keys(std::string_view stored) {
  opened o;
  if (!is_envelope(stored)) {
    o.plaintext = std::string(stored);
    return o;
  }
  o.was_sealed = true;
  o.key_id = std::string(envelope_key_id(stored));
  o.code = o.key_id.empty() ? errc::malformed : errc::key_missing;
  return o;
}

opened keyring::open(std::string_view aad, std::string_view stored) const {
  if (!is_envelope(stored))
    return open_without_keys(stored);
  opened o;
  o.was_sealed = true;
  auto id = envelope_key_id(stored);
  o.key_id = std::string(id);
  std::size_t header = 2 + id.size();
  if (id.empty() || stored.size() < header + nonce_bytes + tag_bytes) {
    o.code = errc::malformed;
    return o;
  }
  const key* k = find(id);
  if (k == nullptr) {
    o.code = errc::key_missing;
    return o;
  }
  const auto* p = bytes(stored);
  auto ct_len = stored.size() - header - nonce_bytes - tag_bytes;
  const auto* ct = p + header + nonce_bytes;
  std::string out(ct_len, '\0');
  auto* dst = reinterpret_cast<unsigned char*>(out.data());
  unsigned char tag[tag_bytes];
  std::memcpy(tag, ct + ct_len, tag_bytes);
  auto* ctx = thread_ctx(false, k->bytes.data(), p + header);
  int len = 0;
  int fin = 0;
  bool ok = ctx != nullptr &&
            EVP_DecryptUpdate(ctx, nullptr, &len, p, static_cast<int>(header)) == 1 &&
            EVP_DecryptUpdate(ctx, nullptr, &len, bytes(aad), static_cast<int>(aad.size())) == 1 &&
            EVP_DecryptUpdate(ctx, dst, &len, ct, static_cast<int>(ct_len)) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, static_cast<int>(tag_bytes), tag) == 1 &&
            EVP_DecryptFinal_ex(ctx, dst + len, &fin) == 1;
  if (!ok) {
    OPENSSL_cleanse(out.data(), out.size());
    o.code = errc::auth_failed; // never hand back unverified bytes
    return o;
  }
  o.plaintext = std::move(out);
  return o;
}

} // namespace sessiond::crypto
