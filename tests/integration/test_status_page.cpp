// The status page (GET /) as an operator's browser shows it: the real sessiond binary after a few
// writes, a sync, queued jobs and cache reads, the page loaded in headless Chromium, and the
// figures read from its DOM.
#include "support.hpp"

#include <fcntl.h>
#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <regex>
#include <string>

using namespace sessiond;

namespace {

/// A sessiond child process with its own key prefix and PostgreSQL schema, and `toml` (when not
/// empty) as its configuration file; SIGTERM on scope exit.
struct sessiond_child {
  pid_t pid = -1;
  std::uint16_t port = test::free_port();
  std::string config_path;

  explicit sessiond_child(const std::string& node_id, const std::string& toml = "") {
    if (!toml.empty()) {
      char path[] = "/tmp/sessiond-page-XXXXXX.toml";
      int fd = mkstemps(path, 5);
      REQUIRE(fd >= 0);
      REQUIRE(write(fd, toml.data(), toml.size()) == static_cast<ssize_t>(toml.size()));
      close(fd);
      config_path = path;
    }
    std::random_device rd;
    auto schema = "t_page_" + std::to_string(getpid()) + "_" + std::to_string(rd() % 1000000);
    auto redis_url = test::env_or_fail("REDIS_URL");
    auto postgres_url = test::env_or_fail("POSTGRES_URL");
    pid = fork();
    if (pid == 0) {
      int devnull = open("/dev/null", O_WRONLY);
      dup2(devnull, 1);
      dup2(devnull, 2);
      setenv("SESSIOND_REDIS_URL", redis_url.c_str(), 1);
      setenv("SESSIOND_REDIS_KEY_PREFIX", test::unique_prefix().c_str(), 1);
      setenv("SESSIOND_POSTGRES_URL", postgres_url.c_str(), 1);
      setenv("SESSIOND_POSTGRES_SCHEMA", schema.c_str(), 1);
      setenv("SESSIOND_NODE_ID", node_id.c_str(), 1);
      setenv("SESSIOND_METRICS_REDIS_POLL_MS", "500", 1);
      setenv("SESSIOND_HTTP_LISTEN", ("127.0.0.1:" + std::to_string(port)).c_str(), 1);
      if (!config_path.empty())
        setenv("SESSIOND_CONFIG", config_path.c_str(), 1);
      execl(SESSIOND_BIN, SESSIOND_BIN, static_cast<char*>(nullptr));
      _exit(127);
    }
  }
  ~sessiond_child() {
    kill(pid, SIGTERM);
    waitpid(pid, nullptr, 0);
    if (!config_path.empty())
      std::remove(config_path.c_str());
  }
};

/// Runs `cmd` through the shell; its stdout, and its exit status in `code`.
std::string run(const std::string& cmd, int& code) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p);
  std::array<char, 4096> buf{};
  while (auto n = fread(buf.data(), 1, buf.size(), p))
    out.append(buf.data(), n);
  int status = pclose(p);
  code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

/// The DOM of `url` after the page's scripts ran for 5 s of virtual time (Chromium holds virtual
/// time while a fetch is pending, so the page's first /v1/status answers are in).
std::string dump_dom(const std::string& url) {
  std::string bin = CHROMIUM_BIN;
  if (const char* env = std::getenv("CHROMIUM_BIN"); env && *env)
    bin = env;
  if (bin.empty() || bin.find("NOTFOUND") != std::string::npos)
    FAIL("chromium was not found when CMake configured the build: install the Debian package "
         "chromium (scripts/install-deps does) and reconfigure, or set CHROMIUM_BIN");
  char dir[] = "/tmp/sessiond-chromium-XXXXXX";
  REQUIRE(mkdtemp(dir) != nullptr);
  std::string d = dir;
  // --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
  std::string cmd = "timeout 120 '" + bin +
                    "' --headless --no-sandbox --disable-gpu --disable-dev-shm-usage "
                    "--no-first-run --user-data-dir='" +
                    d + "/profile' --virtual-time-budget=5000 --dump-dom '" + url + "' 2>'" + d +
                    "/stderr'";
  int code = 0;
  auto dom = run(cmd, code);
  int ignored = 0;
  auto err = run("tail -n 20 '" + d + "/stderr'; rm -rf '" + d + "'", ignored);
  INFO("chromium exit " << code << ", stderr tail:\n" << err);
  REQUIRE(code == 0);
  REQUIRE(dom.find("</html>") != std::string::npos);
  return dom;
}

/// The text of the element with `id` in a DOM dump (our page's figures hold text only).
std::string text_of(const std::string& dom, const std::string& id) {
  std::smatch m;
  std::regex re("id=\"" + id + "\"[^>]*>([^<]*)<");
  if (!std::regex_search(dom, m, re))
    return "(no element with id " + id + ")";
  return m[1];
}

bool is_number(const std::string& s) {
  return std::regex_match(s, std::regex("[0-9]+(\\.[0-9]+)?"));
}

/// The texts of the cells of the table row with `id`, in order; none when there is no such row.
std::vector<std::string> row_cells(const std::string& dom, const std::string& id) {
  std::smatch row;
  if (!std::regex_search(dom, row, std::regex("<tr id=\"" + id + "\">(.*?)</tr>")))
    return {};
  std::vector<std::string> cells;
  auto text = row[1].str();
  std::regex td("<td[^>]*>([^<]*)</td>");
  for (auto it = std::sregex_iterator(text.begin(), text.end(), td); it != std::sregex_iterator();
       ++it)
    cells.push_back((*it)[1]);
  return cells;
}

} // namespace

TEST_CASE("the status page renders every figure of /v1/status in headless Chromium") {
  // A cache namespace without a loader (a plain TTL cache), so it needs no table; its near-cache
  // entries outlive the test.
  sessiond_child sd("page-node", "[cache.namespaces.page]\nttl_s = 60\nnear_cache_entries = 100\n"
                                 "near_ttl_ms = 600000\n");
  REQUIRE(test::eventually(
      [&] {
        try {
          return test::client(sd.port).get("/readyz").status == 200;
        } catch (...) {
          return false;
        }
      },
      std::chrono::seconds(30)));
  test::client api(sd.port);
  for (int i = 0; i < 20; ++i) {
    auto id = "/v1/sessions/page-" + std::to_string(i);
    REQUIRE(
        api.put(id, R"({"user_id":"u)" + std::to_string(i % 3) + R"(","data":{"n":1}})").status ==
        201);
    REQUIRE(api.get(id).status == 200);
  }
  REQUIRE(api.call(test::bhttp::verb::post, "/v1/admin/sync").status == 200);
  for (int i = 0; i < 3; ++i)
    REQUIRE(api.call(test::bhttp::verb::post, "/v1/queues/mail/jobs",
                     R"({"type":"send_notifications","payload":{}})")
                .status == 201);
  // The cache: a PUT, then three hits (Redis, then twice this node's near cache) and a miss. The
  // PUT's invalidation comes back to this node through its subscription and drops k1 from its
  // near cache: subscribed first, and the reads once that has arrived, so it drops nothing later.
  REQUIRE(test::eventually(
      [&] { return api.get("/v1/status").body.find(R"("subscribed":true)") != std::string::npos; },
      std::chrono::seconds(10)));
  REQUIRE(api.put("/v1/cache/page/k1", R"({"n":1})").status == 204);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  for (int i = 0; i < 3; ++i)
    REQUIRE(api.get("/v1/cache/page/k1").status == 200);
  REQUIRE(api.get("/v1/cache/page/absent").status == 404);
  // /v1/status rates come from once-a-second samples: let two or three of them see the writes.
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  auto page = api.get("/");
  REQUIRE(page.status == 200);
  CHECK(page.header("Content-Type").find("text/html") == 0);
  // The page refers to nothing outside itself (the SVG namespace is a name, not a fetch).
  auto body = std::regex_replace(page.body, std::regex("http://www\\.w3\\.org/2000/svg"), "");
  CHECK(body.find("src=") == std::string::npos);
  CHECK(body.find("href=") == std::string::npos);
  CHECK(body.find("http://") == std::string::npos);
  CHECK(body.find("https://") == std::string::npos);
  CHECK(body.find("url(") == std::string::npos);
  CHECK(body.find("@import") == std::string::npos);

  auto dom = dump_dom("http://127.0.0.1:" + std::to_string(sd.port) + "/");
  INFO(dom);
  CHECK(dom.find("id=\"error\" role=\"alert\" hidden") != std::string::npos);
  CHECK(text_of(dom, "node-id") == "page-node");
  CHECK(text_of(dom, "mode") == "redis-primary");
  CHECK(text_of(dom, "degraded") == "no");
  CHECK(text_of(dom, "redis-up") == "up");
  CHECK(text_of(dom, "postgres-up") == "up");
  for (const char* id :
       {"redis-writes", "redis-ops", "redis-latency-avg", "redis-latency-p99", "redis-memory-used",
        "sync-backlog", "sync-age", "sync-duration", "sync-failed"}) {
    INFO(id);
    CHECK(is_number(text_of(dom, id)));
  }
  CHECK(std::stod(text_of(dom, "redis-writes")) > 0);
  CHECK(std::stod(text_of(dom, "redis-memory-used")) > 0);
  CHECK(text_of(dom, "sync-backlog") == "0");
  CHECK(text_of(dom, "sync-failed") == "0");
  CHECK(text_of(dom, "redis-memory-max") == "no limit"); // scripts/services: no maxmemory
  CHECK(text_of(dom, "redis-policy") == "noeviction");
  CHECK(text_of(dom, "updated") != "never");
  // The queue's row: its name, then waiting, delayed, active, failed.
  auto cells = row_cells(dom, "queue-mail");
  REQUIRE(cells.size() == 11);
  CHECK(cells[0] == "mail");
  CHECK(cells[1] == "3");
  CHECK(cells[4] == "0");
  // The cache: its Redis and subscription, then the namespace's row: name, hit ratio, hits,
  // misses, near hits, loads, load errors, stale served, near entries of capacity.
  CHECK(text_of(dom, "cache-degraded") == "up");
  CHECK(text_of(dom, "cache-subscribed") == "yes");
  CHECK(text_of(dom, "cache-memory-ratio") == "no limit"); // scripts/services: no maxmemory
  auto cache = row_cells(dom, "cache-ns-page");
  REQUIRE(cache.size() == 9);
  CHECK(cache[0] == "page (no loader)");
  CHECK(cache[1] == "75.0%");
  CHECK(cache[2] == "3");
  CHECK(cache[3] == "1");
  CHECK(cache[4] == "2");
  CHECK(cache[5] == "0");
  CHECK(cache[6] == "0");
  CHECK(cache[7] == "0");
  CHECK(cache[8] == "1 of 100");
  // The Redis topology: the single Redis of scripts/services, one master with every slot.
  CHECK(text_of(dom, "topology-kind") == "a single Redis");
  CHECK(text_of(dom, "topology-unserved") == "0");
  auto master = row_cells(dom, "topology-master-0");
  REQUIRE(master.size() == 6);
  CHECK(master[1] == "16384");
  CHECK(master[4] == "yes");
  // The nodes of /v1/cluster: this one, live, with its sync partitions (none synced yet: 0).
  auto node = row_cells(dom, "cluster-node-0");
  REQUIRE(node.size() == 8);
  CHECK(node[0] == "page-node (this node)");
  CHECK(node[1] == "redis-primary");
  CHECK(node[5] == "yes");
  CHECK(is_number(node[6].substr(0, node[6].find(' '))));
  CHECK(node[7] == "0");
  CHECK(text_of(dom, "cluster-partitions") == "1024");
  // The charts: a line with a point for the recorded history (the node records one as it
  // starts) and one for now. The sync backlog is not known yet at the very start: its chart may
  // begin with the live point alone.
  for (const char* id : {"chart-requests", "chart-p99", "chart-backlog", "chart-queue-mail"}) {
    INFO(id);
    std::smatch fig;
    REQUIRE(
        std::regex_search(dom, fig, std::regex(std::string("id=\"") + id + "\"(.*?)</figure>")));
    std::smatch line;
    auto f = fig[1].str();
    REQUIRE(std::regex_search(f, line, std::regex("<polyline points=\"([^\"]*)\"")));
    auto points = line[1].str();
    CHECK(std::count(points.begin(), points.end(), ',') >=
          (id == std::string("chart-backlog") ? 1 : 2));
  }
}

TEST_CASE("the status page shows an error banner when /v1/status cannot be fetched") {
  sessiond_child sd("page-node-2");
  REQUIRE(test::eventually(
      [&] {
        try {
          return test::client(sd.port).get("/readyz").status == 200;
        } catch (...) {
          return false;
        }
      },
      std::chrono::seconds(30)));
  auto html = test::client(sd.port).get("/").body;
  REQUIRE(html.find("/v1/status") != std::string::npos);
  // The same page served where /v1/status does not exist (a file URL): the fetch fails.
  char path[] = "/tmp/sessiond-status-XXXXXX.html";
  int fd = mkstemps(path, 5);
  REQUIRE(fd >= 0);
  REQUIRE(write(fd, html.data(), html.size()) == static_cast<ssize_t>(html.size()));
  close(fd);
  auto dom = dump_dom(std::string("file://") + path);
  std::remove(path);
  INFO(dom);
  CHECK(text_of(dom, "error").find("Cannot load /v1/status") == 0);
  CHECK(dom.find("id=\"error\" role=\"alert\" hidden") == std::string::npos);
  CHECK(text_of(dom, "sync-backlog") == "\xE2\x80\xA6"); // still the placeholder
}

TEST_CASE("with auth on, the status page sends the admin token from its #token= fragment") {
  const std::string admin_token = "page-admin-Rt6Yu8Io0Pa2Sd4F";
  char path[] = "/tmp/sessiond-page-tokens-XXXXXX";
  int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  const std::string file = admin_token + "\n";
  REQUIRE(write(fd, file.data(), file.size()) == static_cast<ssize_t>(file.size()));
  close(fd);
  sessiond_child sd("page-auth", std::string("[auth]\nadmin_tokens_file = \"") + path + "\"\n");
  REQUIRE(test::eventually(
      [&] {
        try {
          return test::client(sd.port).get("/readyz").status == 200;
        } catch (...) {
          return false;
        }
      },
      std::chrono::seconds(30)));
  auto base = "http://127.0.0.1:" + std::to_string(sd.port) + "/";
  auto with_token = dump_dom(base + "#token=" + admin_token);
  auto without = dump_dom(base);
  std::remove(path);
  {
    INFO(with_token);
    CHECK(with_token.find("id=\"error\" role=\"alert\" hidden") != std::string::npos);
    CHECK(text_of(with_token, "node-id") == "page-auth");
  }
  INFO(without);
  CHECK(text_of(without, "error").find("needs an admin token") != std::string::npos);
  CHECK(text_of(without, "node-id") != "page-auth");
}
