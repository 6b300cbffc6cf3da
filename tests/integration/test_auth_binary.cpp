// Authentication in the sessiond binary as operators run it: a tokens file that cannot be used
// stops start-up with exit 2 and one line, --print-config shows paths but no token, and SIGHUP
// rotates the tokens (a bad file at SIGHUP keeps the old ones and says why on stderr).
#include "support.hpp"

#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <fstream>
#include <sstream>

using namespace sessiond;
using Catch::Matchers::Contains;

namespace {

const std::string api_token = "api-Bn5Mz2Lq8Xw4Kc7Vr1Td";
const std::string rotated_token = "api-rotated-Gh3Jk5Lm7Np9";

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

struct temp_file {
  std::string path;
  explicit temp_file(const std::string& text) {
    char name[] = "/tmp/sessiond-auth-bin-XXXXXX";
    int fd = mkstemp(name);
    REQUIRE(fd >= 0);
    close(fd);
    path = name;
    write(text);
  }
  ~temp_file() { std::remove(path.c_str()); }
  void write(const std::string& text) const {
    std::ofstream out(path, std::ios::trunc);
    out << text;
    REQUIRE(out.good());
  }
  std::string read() const {
    std::ifstream in(path);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
};

/// A sessiond child with an API tokens file; stdout's first line is read, stderr goes to a file.
struct child {
  pid_t pid = -1;
  std::string first_line;
  temp_file err{""};

  child(const std::string& tokens_path, std::uint16_t port) {
    const std::string redis_url = test::env_or_fail("REDIS_URL");
    const std::string prefix = test::unique_prefix();
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
      setenv("SESSIOND_AUTH_API_TOKENS_FILE", tokens_path.c_str(), 1);
      execl(SESSIOND_BIN, SESSIOND_BIN, static_cast<char*>(nullptr));
      _exit(127);
    }
    close(pipefd[1]);
    char ch;
    while (read(pipefd[0], &ch, 1) == 1 && ch != '\n')
      first_line += ch;
    close(pipefd[0]);
  }
  ~child() {
    if (pid > 0)
      terminate();
  }

  int terminate() {
    kill(pid, SIGTERM);
    int status = 0;
    waitpid(pid, &status, 0);
    pid = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  bool alive() const { return pid > 0 && waitpid(pid, nullptr, WNOHANG) == 0; }
};

int status_with(std::uint16_t port, const std::string& token) {
  return test::client(port).get("/v1/sessions/none", {{"Authorization", "Bearer " + token}}).status;
}

} // namespace

TEST_CASE("a tokens file that cannot be used stops start-up with exit 2 and one line naming it") {
  temp_file short_token("# team A\n" + api_token + "\nsecret-short\n");
  auto r = run("", "SESSIOND_AUTH_API_TOKENS_FILE=" + short_token.path +
                       " SESSIOND_HTTP_LISTEN=127.0.0.1:0");
  CHECK(r.code == 2);
  CHECK(r.out == "config: auth: tokens file \"" + short_token.path +
                     "\" holds a token shorter than 16 characters (line 3)\n");
  auto check = run("--check-config", "SESSIOND_AUTH_ADMIN_TOKENS_FILE=/nonexistent/admin-tokens");
  CHECK(check.code == 2);
  CHECK(check.out == "config: auth: tokens file \"/nonexistent/admin-tokens\" cannot be read: No "
                     "such file or directory\n");
  temp_file empty("\n# nothing here\n");
  auto none = run("--check-config", "SESSIOND_AUTH_API_TOKENS_FILE=" + empty.path);
  CHECK(none.code == 2);
  CHECK_THAT(none.out, Contains("holds no token"));
  CHECK(std::count(none.out.begin(), none.out.end(), '\n') == 1);
}

TEST_CASE("--print-config shows the tokens files' paths, never a token") {
  temp_file tokens(api_token + "\n");
  auto r = run("--print-config", "SESSIOND_AUTH_API_TOKENS_FILE=" + tokens.path);
  CHECK(r.code == 0);
  CHECK_THAT(r.out, Contains("api_tokens_file = \"" + tokens.path + "\""));
  CHECK(r.out.find(api_token) == std::string::npos);
  CHECK(run("--check-config", "SESSIOND_AUTH_API_TOKENS_FILE=" + tokens.path).code == 0);
}

TEST_CASE("SIGHUP re-reads the tokens files; a bad file then keeps the old tokens and says why") {
  temp_file tokens(api_token + "\n");
  auto port = test::free_port();
  child sd(tokens.path, port);
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
