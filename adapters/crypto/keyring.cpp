// See keyring.hpp. Envelope v1, stored as raw bytes (Redis values are binary safe):
//   0xE1 | id_len (1 byte) | key id | nonce (12) | ciphertext | tag (16)
// The GCM associated data is the header (0xE1, id_len, key id) followed by the caller's aad, so
// neither the key id nor the owner of a value can be changed without the tag failing.
#include "adapters/crypto/keyring.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

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

bool blank(char ch) {
  return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\f' || ch == '\v';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && blank(s.front()))
    s.remove_prefix(1);
  while (!s.empty() && blank(s.back()))
    s.remove_suffix(1);
  return s;
}

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

/// Releases the cipher context on every path.
struct ctx_ptr {
  EVP_CIPHER_CTX* p = EVP_CIPHER_CTX_new();
  ~ctx_ptr() { EVP_CIPHER_CTX_free(p); }
};

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
  std::size_t line_no = 0;
  while (!text.empty()) {
    ++line_no;
    auto nl = text.find('\n');
    auto line = trim(text.substr(0, nl));
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    if (line.empty() || line.front() == '#')
      continue;
    auto colon = line.find(':');
    if (colon == std::string_view::npos)
      refuse(errc::bad_line, line_no);
    auto id = trim(line.substr(0, colon));
    auto b64 = trim(line.substr(colon + 1));
    if (id.empty() || id.size() > max_key_id_chars || !std::all_of(id.begin(), id.end(), id_char))
      refuse(errc::bad_key_id, line_no);
    std::string raw;
    if (!base64_decode(b64, raw))
      refuse(errc::bad_base64, line_no);
    if (raw.size() != key_bytes) {
      OPENSSL_cleanse(raw.data(), raw.size());
      refuse(errc::bad_length, line_no);
    }
    if (ring->find(id) != nullptr)
      refuse(errc::duplicate_id, line_no);
    key k;
    k.id = std::string(id);
    std::memcpy(k.bytes.data(), raw.data(), key_bytes);
    OPENSSL_cleanse(raw.data(), raw.size());
    ring->keys_.push_back(std::move(k));
  }
  if (ring->keys_.empty())
    refuse(errc::no_keys, 0);
  return ring;
}

std::shared_ptr<const keyring> keyring::load_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw key_file_error("keys file \"" + path + "\" " + to_string(errc::unreadable) + ": " +
                         std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  auto s = text.str();
  try {
    auto ring = parse(s);
    OPENSSL_cleanse(s.data(), s.size());
    return ring;
  } catch (const key_file_error& e) {
    OPENSSL_cleanse(s.data(), s.size());
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
  if (RAND_bytes(p + header, static_cast<int>(nonce_bytes)) != 1)
    throw std::runtime_error("encryption: RAND_bytes failed");
  ctx_ptr ctx;
  int len = 0;
  bool ok = ctx.p != nullptr &&
            EVP_EncryptInit_ex(ctx.p, EVP_aes_256_gcm(), nullptr, nullptr, nullptr) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx.p, EVP_CTRL_GCM_SET_IVLEN, static_cast<int>(nonce_bytes),
                                nullptr) == 1 &&
            EVP_EncryptInit_ex(ctx.p, nullptr, nullptr, k.bytes.data(), p + header) == 1 &&
            EVP_EncryptUpdate(ctx.p, nullptr, &len, p, static_cast<int>(header)) == 1 &&
            EVP_EncryptUpdate(ctx.p, nullptr, &len, bytes(aad), static_cast<int>(aad.size())) == 1;
  auto* ct = p + header + nonce_bytes;
  ok = ok && EVP_EncryptUpdate(ctx.p, ct, &len, bytes(plaintext),
                               static_cast<int>(plaintext.size())) == 1;
  int fin = 0;
  ok = ok && EVP_EncryptFinal_ex(ctx.p, ct + len, &fin) == 1 &&
       EVP_CIPHER_CTX_ctrl(ctx.p, EVP_CTRL_GCM_GET_TAG, static_cast<int>(tag_bytes),
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
  ctx_ptr ctx;
  int len = 0;
  bool ok =
      ctx.p != nullptr &&
      EVP_DecryptInit_ex(ctx.p, EVP_aes_256_gcm(), nullptr, nullptr, nullptr) == 1 &&
      EVP_CIPHER_CTX_ctrl(ctx.p, EVP_CTRL_GCM_SET_IVLEN, static_cast<int>(nonce_bytes), nullptr) ==
          1 &&
      EVP_DecryptInit_ex(ctx.p, nullptr, nullptr, k->bytes.data(), p + header) == 1 &&
      EVP_DecryptUpdate(ctx.p, nullptr, &len, p, static_cast<int>(header)) == 1 &&
      EVP_DecryptUpdate(ctx.p, nullptr, &len, bytes(aad), static_cast<int>(aad.size())) == 1 &&
      EVP_DecryptUpdate(ctx.p, dst, &len, ct, static_cast<int>(ct_len)) == 1 &&
      EVP_CIPHER_CTX_ctrl(ctx.p, EVP_CTRL_GCM_SET_TAG, static_cast<int>(tag_bytes), tag) == 1;
  int fin = 0;
  if (!ok || EVP_DecryptFinal_ex(ctx.p, dst + len, &fin) != 1) {
    OPENSSL_cleanse(out.data(), out.size());
    o.code = errc::auth_failed; // never hand back unverified bytes
    return o;
  }
  o.plaintext = std::move(out);
  return o;
}

} // namespace sessiond::crypto
