// Nothing acknowledged is lost: an external worker killed with SIGKILL mid-job (the job runs
// again after its lease expires), a node killed with SIGKILL under load (every acknowledged job
// completes after the restart, none left active), and Redis killed and restarted with AOF.
#include "queue_support.hpp"

#include <poll.h>

#include <cstdlib>
#include <mutex>
#include <set>
#include <thread>

using namespace sessiond;
using test::body_of;
using test::client;
using test::json;
using test::post_json;

namespace {

/// Runs `argv` with stdout on a pipe; the child is killed when this goes away.
struct child_process {
  pid_t pid = -1;
  int out = -1;

  explicit child_process(std::vector<std::string> argv,
                         std::vector<std::pair<std::string, std::string>> env = {}) {
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    pid = fork();
    if (pid == 0) {
      dup2(fds[1], 1);
      int devnull = open("/dev/null", O_WRONLY);
      dup2(devnull, 2);
      close(fds[0]);
      for (auto& [k, v] : env)
        setenv(k.c_str(), v.c_str(), 1);
      std::vector<char*> args;
      for (auto& a : argv)
        args.push_back(a.data());
      args.push_back(nullptr);
      execv(args[0], args.data());
      _exit(127);
    }
    close(fds[1]);
    out = fds[0];
  }
  ~child_process() {
    kill_now();
    if (out >= 0)
      close(out);
  }
  void kill_now() {
    if (pid <= 0)
      return;
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    pid = -1;
  }
  /// One line of its stdout, waiting up to `limit`; empty on timeout or EOF.
  std::string line(std::chrono::milliseconds limit) {
    std::string text;
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd p{out, POLLIN, 0};
      if (poll(&p, 1, 50) <= 0)
        continue;
      char ch = 0;
      if (read(out, &ch, 1) != 1)
        break;
      if (ch == '\n')
        return text;
      text += ch;
    }
    return {};
  }
};

bool answers(std::uint16_t port) {
  try {
    return client(port, std::chrono::seconds(1)).get("/readyz").status == 200;
  } catch (...) {
    return false;
  }
}

std::string write_config(const std::string& text) {
  char path[] = "/tmp/sessiond-queue-test-XXXXXX";
  int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  REQUIRE(write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
  close(fd);
  return path;
}

} // namespace

TEST_CASE("a worker killed with SIGKILL mid-job: the job runs again once its lease expires") {
  auto cfg = test::test_config();
  cfg.queues.maintenance_interval_ms = 50;
  test::queue_node n(cfg);
  client c(n.port);
  auto id = test::enqueue(c, "jobs", {{"type", "archive_old_interactions"}});
  child_process worker({QUEUE_LEASE_WORKER_BIN, std::to_string(n.port), "jobs", "1000"});
  auto leased = worker.line(std::chrono::seconds(10));
  REQUIRE(leased.rfind(id + " ", 0) == 0);
  auto dead_token = leased.substr(id.size() + 1);
  CHECK(test::job_of(c, "jobs", id)["state"] == "active");
  worker.kill_now();
  auto start = std::chrono::steady_clock::now();
  auto again = test::lease(c, "jobs", {{"wait_ms", 10000}});
  REQUIRE(again.size() == 1);
  CHECK(again[0]["id"] == id);
  CHECK(again[0]["attempt"] == 2);
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(3));
  CHECK(post_json(c, "/v1/queues/jobs/jobs/" + id + "/complete", {{"lease_token", dead_token}})
            .status == 409);
  CHECK(post_json(c, "/v1/queues/jobs/jobs/" + id + "/complete",
                  {{"lease_token", again[0]["lease_token"]}})
            .status == 204);
}

TEST_CASE("a node killed with SIGKILL under load: every acknowledged job completes after restart") {
  auto cfg = test::test_config();
  auto port = test::free_port();
  auto path = write_config(R"(
[queues]
maintenance_interval_ms = 100
[queues.load]
concurrency = 16
lease_ms = 2000
keep_completed = 10000000
[queues.load.handlers.noop]
kind = "noop"
)");
  std::vector<std::pair<std::string, std::string>> env{
      {"SESSIOND_REDIS_URL", cfg.redis.url},
      {"SESSIOND_REDIS_KEY_PREFIX", cfg.redis.key_prefix},
      {"SESSIOND_POSTGRES_URL", std::getenv("POSTGRES_URL") ? std::getenv("POSTGRES_URL") : ""},
      {"SESSIOND_HTTP_LISTEN", "127.0.0.1:" + std::to_string(port)},
      {"SESSIOND_NODE_ID", "queue-durable"}};
  std::vector<std::string> argv{SESSIOND_BIN, "--config", path};
  std::set<std::string> acked;
  {
    child_process node(argv, env);
    REQUIRE(test::eventually([&] { return answers(port); }));
    std::mutex mtx;
    std::atomic<bool> stop{false};
    std::vector<std::thread> producers;
    for (int p = 0; p < 4; ++p)
      producers.emplace_back([&] {
        try {
          client c(port, std::chrono::seconds(2));
          while (!stop) {
            auto r = post_json(c, "/v1/queues/load/jobs",
                               {{"type", "noop"}, {"payload", {{"pad", std::string(100, 'x')}}}});
            if (r.status == 201) {
              std::lock_guard<std::mutex> guard{mtx};
              acked.insert(body_of(r)["id"].get<std::string>());
            }
          }
        } catch (const std::exception&) {
          // the node died with this request in flight: it was never acknowledged
        }
      });
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    node.kill_now();
    stop = true;
    for (auto& t : producers)
      t.join();
  }
  REQUIRE(acked.size() > 200);
  child_process again(argv, env);
  REQUIRE(test::eventually([&] { return answers(port); }));
  client c(port);
  REQUIRE(test::eventually(
      [&] {
        auto n = test::counts_of(c, "load");
        return n["waiting"] == 0 && n["active"] == 0 && n["delayed"] == 0;
      },
      std::chrono::seconds(30)));
  test::redis_probe probe(cfg.redis.url);
  std::size_t completed = 0;
  std::vector<std::string> missing;
  for (const auto& id : acked) {
    auto st = probe.command({"HGET", cfg.redis.key_prefix + "{q:load}:j:" + id, "st"}).str;
    if (st == "c")
      ++completed;
    else if (missing.size() < 5)
      missing.push_back(id + "=" + st);
  }
  INFO("not completed: " << missing.size() << " e.g. " << (missing.empty() ? "" : missing[0]));
  CHECK(completed == acked.size());
  CHECK(test::counts_of(c, "load")["failed"] == 0);
  std::remove(path.c_str());
}

TEST_CASE("with AOF, jobs acknowledged before Redis is killed are there after its restart") {
  char dir[] = "/tmp/sessiond-aof-XXXXXX";
  REQUIRE(mkdtemp(dir) != nullptr);
  test::private_redis redis({"--appendonly", "yes", "--appendfsync", "everysec", "--dir", dir});
  auto cfg = test::test_config(redis.url());
  cfg.redis.reconnect_max_ms = 200;
  test::queue_node n(cfg);
  std::vector<std::string> ids;
  {
    client c(n.port);
    for (int i = 0; i < 300; ++i)
      ids.push_back(test::enqueue(c, "durable", {{"type", "t"}, {"payload", {{"i", i}}}}));
    auto leased = test::lease(c, "durable", {{"max", 50}, {"lease_ms", 60000}});
    REQUIRE(leased.size() == 50);
  }
  redis.stop(); // SIGKILL: no shutdown, no final fsync
  redis.start();
  REQUIRE(test::eventually([&] { return n.node.stats().redis_up; }, std::chrono::seconds(10)));
  client c(n.port);
  auto counts = test::counts_of(c, "durable");
  CHECK(counts["waiting"] == 250);
  CHECK(counts["active"] == 50);
  for (const auto& id : ids)
    CHECK(c.get("/v1/queues/durable/jobs/" + id).status == 200);
  std::system(("rm -rf " + std::string(dir)).c_str());
}
