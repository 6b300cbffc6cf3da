// Unit tests of adapters/auth/tokens: the tokens file parser, its refusals (which never show a
// token), and the constant-time matcher's answers.
#include "adapters/auth/tokens.hpp"

#include <catch2/catch.hpp>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

using namespace sessiond;
using Catch::Matchers::Contains;

namespace {

const std::string api_a = "api-token-aaaaaaaaaaaaaaaa";
const std::string api_b = "api-token-bbbbbbbbbbbbbbbb";
const std::string admin_a = "admin-token-cccccccccccccc";

auth::parse_error error_of(const std::string& text) {
  auth::parse_error err;
  auto tokens = auth::parse_tokens(text, err);
  if (err.code != auth::errc::ok)
    CHECK(tokens.empty());
  return err;
}

/// A file of `text` that is removed when the test ends.
struct temp_file {
  std::string path;
  explicit temp_file(const std::string& text) {
    char name[] = "/tmp/sessiond-tokens-XXXXXX";
    int fd = mkstemp(name);
    REQUIRE(fd >= 0);
    REQUIRE(write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
    close(fd);
    path = name;
  }
  ~temp_file() { std::remove(path.c_str()); }
};

std::string hex(const auth::digest& d) {
  std::string out;
  char buf[3];
  for (unsigned char b : d) {
    std::snprintf(buf, sizeof buf, "%02x", b);
    out += buf;
  }
  return out;
}

} // namespace

TEST_CASE("a tokens file holds one token per line; comments, blank lines and repeats are skipped") {
  auth::parse_error err;
  auto tokens = auth::parse_tokens("# rotated 2026-01-01\n\n" + api_a + "\r\n  " + api_b +
                                       "\t\n   # an indented comment\n" + api_a + "\n",
                                   err);
  CHECK(err.code == auth::errc::ok);
  CHECK(tokens == std::vector<std::string>{api_a, api_b});
  CHECK(auth::parse_tokens(api_a, err) == std::vector<std::string>{api_a}); // no final newline
}

TEST_CASE("a tokens file with no token, or a bad token, is refused with the line that is bad") {
  CHECK(error_of("").code == auth::errc::no_tokens);
  CHECK(error_of("# only a comment\n\n   \n").code == auth::errc::no_tokens);
  auto inner = error_of(api_a + "\n" + api_b + " # a trailing comment\n");
  CHECK(inner.code == auth::errc::has_whitespace);
  CHECK(inner.line == 2);
  CHECK(error_of("has a space inside it\n").code == auth::errc::has_whitespace);
  auto short_token = error_of("\n\n" + std::string(15, 'x') + "\n");
  CHECK(short_token.code == auth::errc::too_short);
  CHECK(short_token.line == 3);
  CHECK(error_of(std::string(16, 'x')).code == auth::errc::ok);
  CHECK(error_of(std::string(4096, 'x')).code == auth::errc::ok);
  CHECK(error_of(std::string(4097, 'x')).code == auth::errc::too_long);
  CHECK(error_of("\"quoted-token-value-1234\"").code == auth::errc::bad_character);
  CHECK(error_of("token=with-equals-inside").code == auth::errc::bad_character);
  CHECK(error_of("base64+/token/value====").code == auth::errc::ok);
  CHECK(error_of("================").code == auth::errc::bad_character);
}

TEST_CASE("every errc has a to_string") {
  using auth::errc;
  for (errc e : {errc::ok, errc::unreadable, errc::no_tokens, errc::has_whitespace, errc::too_short,
                 errc::too_long, errc::bad_character, errc::in_both_files})
    CHECK(std::string(auth::to_string(e)) != "unknown error");
}

TEST_CASE("a refused tokens file is named with its line and reason, never with a token") {
  temp_file bad(api_a + "\nshort-secret\n");
  try {
    auth::load_token_file(bad.path);
    FAIL("a short token was accepted");
  } catch (const auth::token_file_error& e) {
    std::string what = e.what();
    CHECK_THAT(what, Contains("\"" + bad.path + "\""));
    CHECK_THAT(what, Contains("shorter than 16 characters (line 2)"));
    CHECK(what.find("short-secret") == std::string::npos);
    CHECK(what.find(api_a) == std::string::npos);
    CHECK(what.find('\n') == std::string::npos);
  }
  CHECK_THROWS_WITH(
      auth::load_token_file("/nonexistent/tokens"),
      "tokens file \"/nonexistent/tokens\" cannot be read: No such file or directory");
  CHECK_THROWS_WITH(auth::load_token_file("/tmp"),
                    "tokens file \"/tmp\" cannot be read: Is a directory");
  temp_file empty("# nothing yet\n");
  CHECK_THROWS_WITH(auth::load_token_file(empty.path),
                    Contains("holds no token (only comments and blank lines)"));
}

TEST_CASE("tokens are kept as SHA-256 digests") {
  CHECK(hex(auth::digest_of("abc")) ==
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST_CASE("the matcher gives each token its role and nothing to a near miss") {
  auth::token_set set({api_a, api_b}, {admin_a});
  CHECK(set.api_count() == 2);
  CHECK(set.admin_count() == 1);
  CHECK(set.match(api_a) == auth::role::api);
  CHECK(set.match(api_b) == auth::role::api);
  CHECK(set.match(admin_a) == auth::role::admin);
  CHECK(set.match("") == auth::role::none);
  CHECK(set.match(api_a.substr(0, api_a.size() - 1)) == auth::role::none); // a prefix
  CHECK(set.match(api_a + "a") == auth::role::none);                       // one more character
  CHECK(set.match(std::string(api_a.size(), 'a')) == auth::role::none);
  CHECK(auth::token_set{}.match(api_a) == auth::role::none);
}

TEST_CASE("a token in both files is refused: it would have two roles") {
  CHECK_THROWS_AS(auth::token_set({api_a, admin_a}, {admin_a}), auth::token_file_error);
  temp_file api(api_a + "\n" + admin_a + "\n");
  temp_file admin(admin_a + "\n");
  CHECK_THROWS_WITH(auth::load_token_set(api.path, admin.path),
                    Contains("one token is in both: give each token one role"));
}

TEST_CASE("load_token_set reads both files; an empty path gives no tokens of that role") {
  temp_file api(api_a + "\n");
  temp_file admin(admin_a + "\n");
  auto both = auth::load_token_set(api.path, admin.path);
  CHECK(both->match(api_a) == auth::role::api);
  CHECK(both->match(admin_a) == auth::role::admin);
  auto admin_only = auth::load_token_set("", admin.path);
  CHECK(admin_only->api_count() == 0);
  CHECK(admin_only->match(admin_a) == auth::role::admin);
}
