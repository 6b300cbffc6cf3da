// Authentication in the sessiond binary as operators run it: a tokens file that cannot be used
// stops start-up with exit 2 and one line, --print-config shows paths but no token, and SIGHUP
// rotates the tokens (a bad file at SIGHUP keeps the old ones and says why on stderr).
#include "binary_support.hpp"

#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <fstream>
#include <sstream>

using namespace sessiond;
using Catch::Matchers::Contains;
using test::run_sessiond;
using test::temp_file;

namespace {

const std::string api_token = "api-Bn5Mz2Lq8Xw4Kc7Vr1Td";
const std::string rotated_token = "api-rotated-Gh3Jk5Lm7Np9";

int status_with(std::uint16_t port, const std::string& token) {
  return test::client(port).get("/v1/sessions/none", {{"Authorization", "Bearer " + token}}).status;
}

} // namespace

TEST_CASE("a tokens file that cannot be used stops start-up with exit 2 and one line naming it") {
  temp_file short_token("# team A\n" + api_token + "\nsecret-short\n");
  auto r = run_sessiond("", "SESSIOND_AUTH_API_TOKENS_FILE=" + short_token.path +
                                " SESSIOND_HTTP_LISTEN=127.0.0.1:0");
  CHECK(r.code == 2);
  CHECK(r.out == "config: auth: tokens file \"" + short_token.path +
                     "\" holds a token shorter than 16 characters (line 3)\n");
  auto check =
      run_sessiond("--check-config", "SESSIOND_AUTH_ADMIN_TOKENS_FILE=/nonexistent/admin-tokens");
  CHECK(check.code == 2);
  CHECK(check.out == "config: auth: tokens file \"/nonexistent/admin-tokens\" cannot be read: No "
                     "such file or directory\n");
  temp_file empty("\n# nothing here\n");
  auto none = run_sessiond("--check-config", "SESSIOND_AUTH_API_TOKENS_FILE=" + empty.path);
  CHECK(none.code == 2);
  CHECK_THAT(none.out, Contains("holds no token"));
  CHECK(std::count(none.out.begin(), none.out.end(), '\n') == 1);
}

TEST_CASE("--print-config shows the tokens files' paths, never a token") {
  temp_file tokens(api_token + "\n");
  auto r = run_sessiond("--print-config", "SESSIOND_AUTH_API_TOKENS_FILE=" + tokens.path);
  CHECK(r.code == 0);
  CHECK_THAT(r.out, Contains("api_tokens_file = \"" + tokens.path + "\""));
  CHECK(r.out.find(api_token) == std::string::npos);
  CHECK(run_sessiond("--check-config", "SESSIOND_AUTH_API_TOKENS_FILE=" + tokens.path).code == 0);
}

TEST_CASE("SIGHUP re-reads the tokens files; a bad file then keeps the old tokens and says why") {
  temp_file tokens(api_token + "\n");
  auto port = test::free_port();
  test::sessiond_child sd(port, {{"SESSIOND_AUTH_API_TOKENS_FILE", tokens.path}});
  REQUIRE(sd.first_line == "sessiond listening on http://127.0.0.1:" + std::to_string(port));
  REQUIRE(test::eventually([&] { return test::client(port).get("/readyz").status == 200; }));
  CHECK(status_with(port, api_token) == 404);
  CHECK(status_with(port, rotated_token) == 401);

  tokens.write(rotated_token + "\n");
  REQUIRE(kill(sd.pid, SIGHUP) == 0);
  CHECK(test::eventually([&] { return status_with(port, rotated_token) == 404; }));
  CHECK(status_with(port, api_token) == 401);

  tokens.write(api_token + "\nhas whitespace inside it\n");
  REQUIRE(kill(sd.pid, SIGHUP) == 0);
  CHECK(test::eventually(
      [&] { return sd.err.read().find("auth: reload refused") != std::string::npos; }));
  CHECK(sd.alive());
  CHECK(status_with(port, rotated_token) == 404); // the old set is kept
  CHECK(status_with(port, api_token) == 401);
  auto log = sd.err.read();
  CHECK_THAT(log, Contains("tokens file \"" + tokens.path + "\" holds whitespace"));
  CHECK_THAT(log, Contains("keeping the 1 API and 0 admin tokens loaded before"));
  CHECK(log.find(api_token) == std::string::npos); // tokens are never logged
  CHECK(log.find(rotated_token) == std::string::npos);
  CHECK(sd.terminate() == 0);
}
