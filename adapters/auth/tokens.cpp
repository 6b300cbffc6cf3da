// See tokens.hpp.
#include "adapters/auth/tokens.hpp"

#include "adapters/crypto/secret_file.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <algorithm>
#include <array>

namespace sessiond::auth {

const char* to_string(errc e) {
  switch (e) {
  case errc::ok:
    return "ok";
  case errc::unreadable:
    return "cannot be read";
  case errc::no_tokens:
    return "holds no token (only comments and blank lines)";
  case errc::has_whitespace:
    return "holds whitespace inside a token (a comment must be on a line of its own)";
  case errc::too_short:
    return "holds a token shorter than 16 characters";
  case errc::too_long:
    return "holds a token longer than 4096 characters";
  case errc::bad_character:
    return "holds a character a bearer token cannot carry (allowed: A-Z a-z 0-9 - . _ ~ + / "
           "and = at the end)";
  case errc::in_both_files:
    return "holds a token the other tokens file holds too";
  }
  return "unknown error";
}

namespace {

bool token68_char(char ch) {
  return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
         ch == '-' || ch == '.' || ch == '_' || ch == '~' || ch == '+' || ch == '/';
}

/// RFC 7235 token68: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
errc check_token(std::string_view t) {
  if (std::any_of(t.begin(), t.end(), crypto::is_blank))
    return errc::has_whitespace;
  auto body_end = t.find_last_not_of('=');
  if (body_end == std::string_view::npos ||
      !std::all_of(t.begin(), t.begin() + static_cast<std::ptrdiff_t>(body_end) + 1, token68_char))
    return errc::bad_character;
  if (t.size() < min_token_chars)
    return errc::too_short;
  if (t.size() > max_token_chars)
    return errc::too_long;
  return errc::ok;
}

} // namespace

std::vector<std::string> parse_tokens(std::string_view text, parse_error& err) {
  std::vector<std::string> out;
  bool bad = false;
  crypto::for_each_secret_line(text, [&](std::size_t line_no, std::string_view line) {
    if (bad)
      return;
    if (errc e = check_token(line); e != errc::ok) {
      err = {e, line_no, {}};
      bad = true;
    } else if (std::find(out.begin(), out.end(), line) == out.end()) {
      out.emplace_back(line);
    }
  });
  if (bad) {
    for (auto& t : out)
      crypto::wipe(t);
    return {};
  }
  if (out.empty())
    err = {errc::no_tokens, 0, {}};
  return out;
}

namespace {

[[noreturn]] void refuse(const std::string& path, const parse_error& e) {
  std::string text = "tokens file \"" + path + "\" " + to_string(e.code);
  if (e.line > 0)
    text += " (line " + std::to_string(e.line) + ")";
  if (!e.detail.empty())
    text += ": " + e.detail;
  throw token_file_error(text);
}

} // namespace

std::vector<std::string> load_token_file(const std::string& path) {
  std::string text, why;
  if (!crypto::read_secret_file(path, text, why))
    refuse(path, {errc::unreadable, 0, why});
  parse_error err;
  auto tokens = parse_tokens(text, err);
  crypto::wipe(text);
  if (err.code != errc::ok)
    refuse(path, err);
  return tokens;
}

digest digest_of(std::string_view token) {
  digest d{};
  unsigned int n = 0;
  if (EVP_Digest(token.data(), token.size(), d.data(), &n, EVP_sha256(), nullptr) != 1 ||
      n != d.size())
    throw std::runtime_error("auth: SHA-256 failed"); // OpenSSL without SHA-256: cannot run
  return d;
}

token_set::token_set(const std::vector<std::string>& api, const std::vector<std::string>& admin) {
  for (const auto& t : api)
    entries_.push_back({digest_of(t), role::api});
  api_ = entries_.size();
  for (const auto& t : admin) {
    auto d = digest_of(t);
    for (std::size_t i = 0; i < api_; ++i)
      if (entries_[i].d == d)
        throw token_file_error("one token is in both: give each token one role");
    entries_.push_back({d, role::admin});
  }
}

role token_set::match(std::string_view presented) const {
  const digest d = digest_of(presented);
  // Every entry is compared, whatever matched before; the role is picked without a branch on
  // the comparison's result.
  unsigned found = 0;
  for (const auto& e : entries_) {
    auto diff = static_cast<unsigned>(CRYPTO_memcmp(d.data(), e.d.data(), d.size()));
    unsigned same = ((diff | (0u - diff)) >> 31) ^ 1u; // 1 when diff == 0, without a branch
    unsigned mask = 0u - same;                         // all ones when same
    found |= mask & static_cast<unsigned>(e.r);
  }
  return static_cast<role>(found);
}

std::shared_ptr<const token_set> load_token_set(const std::string& api_path,
                                                const std::string& admin_path) {
  std::vector<std::string> api;
  std::vector<std::string> admin;
  if (!api_path.empty())
    api = load_token_file(api_path);
  if (!admin_path.empty())
    admin = load_token_file(admin_path);
  // The plain tokens live no longer than this call: the set keeps digests only.
  auto wipe = [](std::vector<std::string>& v) {
    for (auto& t : v)
      OPENSSL_cleanse(t.data(), t.size());
  };
  try {
    auto set = std::make_shared<const token_set>(api, admin);
    wipe(api);
    wipe(admin);
    return set;
  } catch (const token_file_error& e) {
    wipe(api);
    wipe(admin);
    throw token_file_error("tokens files \"" + api_path + "\" and \"" + admin_path +
                           "\": " + e.what());
  }
}

} // namespace sessiond::auth
