// The sessiond binary as operators run it: config flags and exit codes, the listening line, and a
// graceful exit 0 on SIGTERM.
#include "binary_support.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <fstream>

using namespace sessiond;
using test::run_sessiond;

TEST_CASE("the shipped config/sessiond.toml passes --check-config") {
  auto r = run_sessiond("--check-config --config " SESSIOND_SOURCE_DIR "/config/sessiond.toml");
  CHECK(r.code == 0);
}

TEST_CASE("an invalid key stops start-up with exit 2 and one line naming it") {
  test::temp_file bad("[sessions]\nttl_s = 0\n", ".toml");
  auto r = run_sessiond("--config " + bad.path);
  CHECK(r.code == 2);
  CHECK(r.out.find("sessions.ttl_s") != std::string::npos);
  CHECK(std::count(r.out.begin(), r.out.end(), '\n') == 1);
  test::temp_file typo("[http]\nio_thread = 2\n", ".toml");
  auto unknown = run_sessiond("--check-config --config " + typo.path);
  CHECK(unknown.code == 2);
  CHECK(unknown.out.find("io_thread") != std::string::npos);
  auto env = run_sessiond("--check-config", "SESSIOND_SESSIONS_SHARDS=0");
  CHECK(env.code == 2);
  CHECK(env.out.find("shards") != std::string::npos);
}

TEST_CASE("every mode of the design is accepted; an unknown one stops start-up with exit 2") {
  for (const char* mode : {"postgres", "shadow", "redis-read", "redis-primary"})
    CHECK(run_sessiond("--check-config", std::string("SESSIOND_SESSIONS_MODE=") + mode).code == 0);
  auto r = run_sessiond("--check-config", "SESSIOND_SESSIONS_MODE=redis-only");
  CHECK(r.code == 2);
  CHECK(r.out.find("sessions.mode") != std::string::npos);
  CHECK(run_sessiond("--print-config", "USE_REDIS_ONLY_SESSIONS=false")
            .out.find("mode = \"postgres\"") != std::string::npos);
  CHECK(run_sessiond("--print-config", "USE_REDIS_ONLY_SESSIONS=true")
            .out.find("mode = \"redis-primary\"") != std::string::npos);
}

TEST_CASE("a Redis TLS client certificate that cannot be read stops start-up with exit 1 and "
          "one line naming the file; one without its key with exit 2") {
  auto r = run_sessiond("", "SESSIOND_REDIS_URL=rediss://127.0.0.1:6380/0"
                            " SESSIOND_REDIS_TLS_CERT_FILE=/nonexistent/node.pem"
                            " SESSIOND_REDIS_TLS_KEY_FILE=/nonexistent/node.key"
                            " SESSIOND_HTTP_LISTEN=127.0.0.1:0");
  CHECK(r.code == 1);
  CHECK(r.out.find("cannot read the TLS client certificate file /nonexistent/node.pem") !=
        std::string::npos);
  CHECK(std::count(r.out.begin(), r.out.end(), '\n') == 1);
  auto half = run_sessiond("--check-config", "SESSIOND_REDIS_TLS_CERT_FILE=/etc/ssl/node.pem");
  CHECK(half.code == 2);
  CHECK(half.out.find("redis.tls_cert_file is set without redis.tls_key_file") !=
        std::string::npos);
}

TEST_CASE("--print-config shows the effective config with secrets masked") {
  auto r = run_sessiond("--print-config",
                        "SESSIOND_REDIS_URL=redis://:hunter2@127.0.0.1:6379/0 SESSION_TTL=77");
  CHECK(r.code == 0);
  CHECK(r.out.find("hunter2") == std::string::npos);
  CHECK(r.out.find("****") != std::string::npos);
  CHECK(r.out.find("ttl_s = 77") != std::string::npos);
}

TEST_CASE("SIGTERM lets a request in flight finish, then sessiond exits 0") {
  test::private_redis redis;
  auto port = test::free_port();
  test::sessiond_child sd(
      port, {{"SESSIOND_REDIS_URL", redis.url()}, {"SESSIOND_REDIS_COMMAND_TIMEOUT_MS", "5000"}});
  REQUIRE(sd.first_line == "sessiond listening on http://127.0.0.1:" + std::to_string(port));
  test::client c(port);
  REQUIRE(test::eventually([&] { return c.get("/readyz").status == 200; }));
  REQUIRE(c.put("/v1/sessions/inflight", R"({"user_id":"u","data":{}})").status == 201);
  redis.pause_clients(800);
  int status = 0;
  std::thread in_flight([&] {
    try {
      status = test::client(port).get("/v1/sessions/inflight").status;
    } catch (const std::exception&) {
      status = -1; // the connection was cut without an answer
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  int code = sd.terminate();
  in_flight.join();
  CHECK(status == 200);
  CHECK(code == 0);
}

TEST_CASE("sessiond prints where it listens, serves, and exits 0 on SIGTERM") {
  auto port = test::free_port();
  test::sessiond_child sd(port, {{"SESSIOND_REDIS_COMMAND_TIMEOUT_MS", "5000"}});
  CHECK(sd.first_line == "sessiond listening on http://127.0.0.1:" + std::to_string(port));
  {
    test::client c(port);
    REQUIRE(test::eventually([&] { return c.get("/readyz").status == 200; }));
    CHECK(c.put("/v1/sessions/bin1", R"({"user_id":"u","data":{}})").status == 201);
  }
  CHECK(sd.terminate() == 0);
}

TEST_CASE("a listen port in use stops start-up with exit 1 and one line naming the address") {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(listen(fd, 1) == 0);
  socklen_t len = sizeof addr;
  REQUIRE(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  auto port = std::to_string(ntohs(addr.sin_port));
  auto r = run_sessiond("", "SESSIOND_REDIS_URL=" + test::env_or_fail("REDIS_URL") +
                                " SESSIOND_REDIS_KEY_PREFIX=" + test::unique_prefix() +
                                " SESSIOND_HTTP_LISTEN=127.0.0.1:" + port);
  close(fd);
  CHECK(r.code == 1); // not a crash (-1) while the threads it had started were torn down
  CHECK(r.out.find("cannot bind 127.0.0.1:" + port) != std::string::npos);
  CHECK(r.out.find("listening") == std::string::npos);
}
