// Encryption at rest in the sessiond binary as operators run it: a keys file that cannot be used
// stops start-up (and --check-config) with exit 2 and one line, --print-config shows the path but
// no key, and SIGHUP rotates the keys (a bad file at SIGHUP keeps the old ones, says why on
// stderr, and never logs a key).
#include "adapters/crypto/keyring.hpp"
#include "binary_support.hpp"

#include <fcntl.h>
#include <nlohmann/json.hpp>
#include <sys/wait.h>

#include <array>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <sstream>

using namespace sessiond;
using Catch::Matchers::Contains;
using test::run_sessiond;
using test::temp_file;

namespace {

const std::string key_a = crypto::base64_encode(std::string(crypto::key_bytes, 'A'));
const std::string key_b = crypto::base64_encode(std::string(crypto::key_bytes, 'B'));

} // namespace

TEST_CASE("a keys file that cannot be used stops start-up with exit 2 and one line naming it") {
  temp_file bad("# keys\nk1:" + key_a + "\nk2:" + key_a.substr(4) + "\n");
  auto r = run_sessiond("", "SESSIOND_ENCRYPTION_KEYS_FILE=" + bad.path +
                                " SESSIOND_HTTP_LISTEN=127.0.0.1:0");
  CHECK(r.code == 2);
  CHECK(r.out == "config: encryption: keys file \"" + bad.path +
                     "\" holds a key that does not decode to 32 bytes (line 3)\n");
  CHECK(r.out.find(key_a.substr(4)) == std::string::npos);
  auto check = run_sessiond("--check-config", "SESSIOND_ENCRYPTION_KEYS_FILE=/nonexistent/keys");
  CHECK(check.code == 2);
  CHECK(check.out == "config: encryption: keys file \"/nonexistent/keys\" cannot be read: No such "
                     "file or directory\n");
  temp_file twice("k1:" + key_a + "\nk1:" + key_b + "\n");
  auto dup = run_sessiond("--check-config", "SESSIOND_ENCRYPTION_KEYS_FILE=" + twice.path);
  CHECK(dup.code == 2);
  CHECK_THAT(dup.out, Contains("holds the same key id twice (line 2)"));
}

TEST_CASE("--print-config shows the keys file's path, never a key") {
  temp_file keys("k1:" + key_a + "\n");
  auto r = run_sessiond("--print-config", "SESSIOND_ENCRYPTION_KEYS_FILE=" + keys.path);
  CHECK(r.code == 0);
  CHECK_THAT(r.out, Contains("keys_file = \"" + keys.path + "\""));
  CHECK(r.out.find(key_a) == std::string::npos);
  CHECK(run_sessiond("--check-config", "SESSIOND_ENCRYPTION_KEYS_FILE=" + keys.path).code == 0);
}

TEST_CASE("SIGHUP re-reads the keys file: the new first key seals new writes; a bad file then "
          "keeps the old keys and says why") {
  temp_file keys("k1:" + key_a + "\n");
  auto port = test::free_port();
  test::sessiond_child sd(port, {{"SESSIOND_ENCRYPTION_KEYS_FILE", keys.path}});
  REQUIRE(sd.first_line == "sessiond listening on http://127.0.0.1:" + std::to_string(port));
  REQUIRE(test::eventually([&] { return test::client(port).get("/readyz").status == 200; }));
  test::client c(port);
  auto current = [&] {
    return nlohmann::json::parse(c.get("/v1/status").body)["encryption"]["current_key"];
  };
  CHECK(current() == "k1");
  REQUIRE(c.put("/v1/sessions/h1", R"({"user_id":"hu","data":{"a":1}})").status == 201);

  keys.write("k2:" + key_b + "\nk1:" + key_a + "\n");
  REQUIRE(sd.signal(SIGHUP));
  CHECK(test::eventually([&] { return current() == "k2"; }));
  CHECK(c.get("/v1/sessions/h1").status == 200); // k1 still reads

  keys.write("k3:" + key_b.substr(2) + "\n");
  REQUIRE(sd.signal(SIGHUP));
  CHECK(test::eventually(
      [&] { return sd.err.read().find("encryption: reload refused") != std::string::npos; }));
  CHECK(current() == "k2");
  CHECK(c.get("/v1/sessions/h1").status == 200);
  auto log = sd.err.read();
  CHECK_THAT(log, Contains("keeping the keys k2, k1 loaded before"));
  CHECK(log.find(key_a) == std::string::npos); // keys are never logged
  CHECK(log.find(key_b.substr(2)) == std::string::npos);
  CHECK(sd.terminate() == 0);
}
