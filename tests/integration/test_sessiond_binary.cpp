// The sessiond binary as operators run it: config flags and exit codes, the listening line, and a
// graceful exit 0 on SIGTERM.
#include "support.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <fstream>

using namespace sessiond;

namespace {

struct run_result {
  int code = -1;
  std::string out;
};

/// Runs sessiond with `args` and the given environment additions; captures stdout+stderr.
run_result run(const std::string& args, const std::string& env = "") {
  std::string cmd = env + " " SESSIOND_BIN " " + args + " 2>&1";
  run_result r;
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p);
  std::array<char, 4096> buf{};
  while (auto n = fread(buf.data(), 1, buf.size(), p))
    r.out.append(buf.data(), n);
  int status = pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

std::string write_temp(const std::string& text) {
  char path[] = "/tmp/sessiond-test-XXXXXX.toml";
  int fd = mkstemps(path, 5);
  REQUIRE(fd >= 0);
  REQUIRE(write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
  close(fd);
  return path;
}

} // namespace

TEST_CASE("the shipped config/sessiond.toml passes --check-config") {
  auto r = run("--check-config --config " SESSIOND_SOURCE_DIR "/config/sessiond.toml");
  CHECK(r.code == 0);
}

TEST_CASE("an invalid key stops start-up with exit 2 and one line naming it") {
  auto path = write_temp("[sessions]\nttl_s = 0\n");
  auto r = run("--config " + path);
  CHECK(r.code == 2);
  CHECK(r.out.find("sessions.ttl_s") != std::string::npos);
  CHECK(std::count(r.out.begin(), r.out.end(), '\n') == 1);
  auto unknown = run("--check-config --config " + write_temp("[http]\nio_thread = 2\n"));
  CHECK(unknown.code == 2);
  CHECK(unknown.out.find("io_thread") != std::string::npos);
  auto env = run("--check-config", "SESSIOND_SESSIONS_SHARDS=0");
  CHECK(env.code == 2);
  CHECK(env.out.find("shards") != std::string::npos);
}

TEST_CASE("every mode of the design is accepted; an unknown one stops start-up with exit 2") {
  for (const char* mode : {"postgres", "shadow", "redis-read", "redis-primary"})
    CHECK(run("--check-config", std::string("SESSIOND_SESSIONS_MODE=") + mode).code == 0);
  auto r = run("--check-config", "SESSIOND_SESSIONS_MODE=redis-only");
  CHECK(r.code == 2);
  CHECK(r.out.find("sessions.mode") != std::string::npos);
  CHECK(run("--print-config", "USE_REDIS_ONLY_SESSIONS=false").out.find("mode = \"postgres\"") !=
        std::string::npos);
  CHECK(
      run("--print-config", "USE_REDIS_ONLY_SESSIONS=true").out.find("mode = \"redis-primary\"") !=
      std::string::npos);
}

TEST_CASE("a Redis TLS client certificate that cannot be read stops start-up with exit 1 and "
          "one line naming the file; one without its key with exit 2") {
  auto r = run("", "SESSIOND_REDIS_URL=rediss://127.0.0.1:6380/0"
                   " SESSIOND_REDIS_TLS_CERT_FILE=/nonexistent/node.pem"
                   " SESSIOND_REDIS_TLS_KEY_FILE=/nonexistent/node.key"
                   " SESSIOND_HTTP_LISTEN=127.0.0.1:0");
  CHECK(r.code == 1);
  CHECK(r.out.find("cannot read the TLS client certificate file /nonexistent/node.pem") !=
        std::string::npos);
  CHECK(std::count(r.out.begin(), r.out.end(), '\n') == 1);
  auto half = run("--check-config", "SESSIOND_REDIS_TLS_CERT_FILE=/etc/ssl/node.pem");
  CHECK(half.code == 2);
  CHECK(half.out.find("redis.tls_cert_file is set without redis.tls_key_file") !=
        std::string::npos);
}

TEST_CASE("--print-config shows the effective config with secrets masked") {
  auto r =
      run("--print-config", "SESSIOND_REDIS_URL=redis://:hunter2@127.0.0.1:6379/0 SESSION_TTL=77");
  CHECK(r.code == 0);
  CHECK(r.out.find("hunter2") == std::string::npos);
  CHECK(r.out.find("****") != std::string::npos);
  CHECK(r.out.find("ttl_s = 77") != std::string::npos);
}

namespace {

/// A sessiond child process whose stdout's first line (the listening line) is read.
struct child {
  pid_t pid = -1;
  std::string first_line;

  child(const std::string& redis_url, std::uint16_t port) {
    int pipefd[2];
    REQUIRE(pipe(pipefd) == 0);
    pid = fork();
    if (pid == 0) {
      dup2(pipefd[1], 1);
      close(pipefd[0]);
      setenv("SESSIOND_REDIS_URL", redis_url.c_str(), 1);
      setenv("SESSIOND_HTTP_LISTEN", ("127.0.0.1:" + std::to_string(port)).c_str(), 1);
      setenv("SESSIOND_REDIS_KEY_PREFIX", test::unique_prefix().c_str(), 1);
      setenv("SESSIOND_REDIS_COMMAND_TIMEOUT_MS", "5000", 1);
      execl(SESSIOND_BIN, SESSIOND_BIN, static_cast<char*>(nullptr));
      _exit(127);
    }
    close(pipefd[1]);
    char ch;
    while (read(pipefd[0], &ch, 1) == 1 && ch != '\n')
      first_line += ch;
    close(pipefd[0]);
  }

  /// SIGTERM, then the exit code (-1 if it did not exit normally).
  int terminate() {
    kill(pid, SIGTERM);
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
};

} // namespace

TEST_CASE("SIGTERM lets a request in flight finish, then sessiond exits 0") {
  test::private_redis redis;
  auto port = test::free_port();
  child sd(redis.url(), port);
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
  child sd(test::env_or_fail("REDIS_URL"), port);
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
  auto r = run("", "SESSIOND_REDIS_URL=" + test::env_or_fail("REDIS_URL") +
                       " SESSIOND_REDIS_KEY_PREFIX=" + test::unique_prefix() +
                       " SESSIOND_HTTP_LISTEN=127.0.0.1:" + port);
  close(fd);
  CHECK(r.code == 1); // not a crash (-1) while the threads it had started were torn down
  CHECK(r.out.find("cannot bind 127.0.0.1:" + port) != std::string::npos);
  CHECK(r.out.find("listening") == std::string::npos);
}
