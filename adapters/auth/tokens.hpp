// Bearer tokens of the API: the tokens files' parser (one token per line, # comments), and the set
// a request's token is matched against in constant time. Token values are never put in an error
// text, a log line or a printed configuration: only file names, line numbers and reasons.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace sessiond::auth {

/// Why a tokens file was refused.
enum class errc {
  ok,
  unreadable,     ///< the file cannot be opened or read
  no_tokens,      ///< only comments and blank lines
  has_whitespace, ///< a line holds whitespace inside its token (a comment must be on its own line)
  too_short,      ///< under min_token_chars
  too_long,       ///< over max_token_chars
  bad_character,  ///< outside the token68 alphabet of RFC 7235
  in_both_files,  ///< the same token is an API and an admin token
};
const char* to_string(errc e);

constexpr std::size_t min_token_chars = 16;
constexpr std::size_t max_token_chars = 4096;

/// A refused file: why, and where (line 0: the file as a whole).
struct parse_error {
  errc code = errc::ok;
  std::size_t line = 0;
  std::string detail; ///< e.g. strerror for unreadable; never a token
};

/// Parses a tokens file's text: one token per line, surrounding blanks (and a CR) ignored, lines
/// whose first non-blank character is '#' and blank lines skipped, repeats kept once. Returns the
/// tokens, or fills `err` (and returns nothing) at the first bad line, or when no token is left.
std::vector<std::string> parse_tokens(std::string_view text, parse_error& err);

/// The file at `path` read and parsed; throws token_file_error naming the file.
std::vector<std::string> load_token_file(const std::string& path);

/// A tokens file that cannot be used: one line naming the file, the line and the reason.
class token_file_error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// What a token may call.
enum class role : std::uint8_t { none, api, admin };

using digest = std::array<unsigned char, 32>;
/// SHA-256 of `token`.
digest digest_of(std::string_view token);

/// The tokens a node accepts, kept as SHA-256 digests only. Immutable once built, so any thread
/// may match against it while a reload builds the next one.
class token_set {
public:
  token_set() = default;
  /// Throws token_file_error when a token is in both lists.
  token_set(const std::vector<std::string>& api, const std::vector<std::string>& admin);

  /// The role of `presented`, or none. Time does not depend on which stored token matches, nor
  /// on how much of one matches: the presented token is hashed, then compared with every stored
  /// digest (CRYPTO_memcmp, no early exit), so neither its length nor a prefix leaks.
  role match(std::string_view presented) const;
  std::size_t api_count() const { return api_; }
  std::size_t admin_count() const { return entries_.size() - api_; }

private:
  struct entry {
    digest d;
    role r;
  };
  std::vector<entry> entries_;
  std::size_t api_ = 0;
};

/// Both files read into a set; an empty path contributes no tokens. Throws token_file_error.
std::shared_ptr<const token_set> load_token_set(const std::string& api_path,
                                                const std::string& admin_path);

} // namespace sessiond::auth
