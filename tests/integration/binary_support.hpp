// Test support for the tests that run the sessiond binary as operators do (SESSIOND_BIN, a compile
// definition of those targets): one run with its exit code and output, and a node started as a
// child process with environment settings (temp_file.hpp for the files they read).
#pragma once

#include "config/config.hpp"
#include "support.hpp"
#include "temp_file.hpp"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <map>
#include <string>

#ifndef SESSIOND_BIN
#error "binary_support.hpp needs SESSIOND_BIN, the path of the sessiond binary"
#endif

namespace sessiond::test {

struct run_result {
  int code = -1;
  std::string out;
};

/// Runs sessiond with `args` and the given environment additions ("NAME=value …"); captures
/// stdout and stderr together.
inline run_result run_sessiond(const std::string& args, const std::string& env = "") {
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

/// sessiond as a child process on REDIS_URL with a key prefix of its own, listening on `port`,
/// with `env` set on top; the constructor returns once stdout's first line (the listening line)
/// is read; stderr goes to `err`. Terminated with SIGTERM when the object goes.
struct sessiond_child {
  pid_t pid = -1;
  std::string first_line;
  temp_file err{""};

  sessiond_child(std::uint16_t port, const std::map<std::string, std::string>& env) {
    const std::string redis_url = env_or_fail("REDIS_URL");
    const std::string prefix = unique_prefix();
    int pipefd[2];
    REQUIRE(pipe(pipefd) == 0);
    pid = fork();
    if (pid == 0) {
      dup2(pipefd[1], 1);
      close(pipefd[0]);
      int fd = open(err.path.c_str(), O_WRONLY | O_TRUNC);
      dup2(fd, 2);
      setenv("SESSIOND_REDIS_URL", redis_url.c_str(), 1);
      setenv("SESSIOND_HTTP_LISTEN", ("127.0.0.1:" + std::to_string(port)).c_str(), 1);
      setenv("SESSIOND_REDIS_KEY_PREFIX", prefix.c_str(), 1);
      for (const auto& [name, value] : env)
        setenv(name.c_str(), value.c_str(), 1);
      execl(SESSIOND_BIN, SESSIOND_BIN, static_cast<char*>(nullptr));
      _exit(127);
    }
    close(pipefd[1]);
    char ch;
    while (::read(pipefd[0], &ch, 1) == 1 && ch != '\n')
      first_line += ch;
    close(pipefd[0]);
  }
  ~sessiond_child() {
    if (pid > 0)
      terminate();
  }
  sessiond_child(const sessiond_child&) = delete;
  sessiond_child& operator=(const sessiond_child&) = delete;

  bool signal(int sig) const { return pid > 0 && kill(pid, sig) == 0; }
  /// SIGTERM, then the exit code (-1: killed by a signal).
  int terminate() {
    kill(pid, SIGTERM);
    int status = 0;
    waitpid(pid, &status, 0);
    pid = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  bool alive() const { return pid > 0 && waitpid(pid, nullptr, WNOHANG) == 0; }
};

/// sessiond as a child process on `cfg`'s Redis (URL, key prefix) and PostgreSQL (URL, schema,
/// statement timeout), named `node_id`, running a sync every `sync_interval_ms`, listening on
/// `port`, its output discarded. The caller kills and reaps it (a test of SIGKILL).
inline pid_t spawn_node(const config::config& cfg, const std::string& node_id,
                        std::int64_t sync_interval_ms, std::uint16_t port) {
  pid_t pid = fork();
  if (pid == 0) {
    int devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, 1);
    dup2(devnull, 2);
    setenv("SESSIOND_REDIS_URL", cfg.redis.url.c_str(), 1);
    setenv("SESSIOND_REDIS_KEY_PREFIX", cfg.redis.key_prefix.c_str(), 1);
    setenv("SESSIOND_POSTGRES_URL", cfg.postgres.url.c_str(), 1);
    setenv("SESSIOND_POSTGRES_SCHEMA", cfg.postgres.schema.c_str(), 1);
    setenv("SESSIOND_POSTGRES_STATEMENT_TIMEOUT_MS",
           std::to_string(cfg.postgres.statement_timeout_ms).c_str(), 1);
    setenv("SESSIOND_NODE_ID", node_id.c_str(), 1);
    setenv("SESSIOND_SYNC_INTERVAL_MS", std::to_string(sync_interval_ms).c_str(), 1);
    setenv("SESSIOND_HTTP_LISTEN", ("127.0.0.1:" + std::to_string(port)).c_str(), 1);
    execl(SESSIOND_BIN, SESSIOND_BIN, static_cast<char*>(nullptr));
    _exit(127);
  }
  return pid;
}

/// Whether GET /readyz on `port` answers 200 within `limit` (refused connections while the node
/// starts count as not yet).
inline bool becomes_ready(std::uint16_t port,
                          std::chrono::milliseconds limit = std::chrono::seconds(20)) {
  return eventually(
      [&] {
        try {
          return client(port).get("/readyz").status == 200;
        } catch (...) {
          return false;
        }
      },
      limit);
}

} // namespace sessiond::test
