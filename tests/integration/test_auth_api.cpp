// Authentication and authorisation end to end against a real node on the test Redis: tokens
// files, 401 / 403 / 429 answers, open health routes, /metrics under protect_metrics, rotation
// through the reload SIGHUP calls (test_auth_binary sends the signal itself), a bad file.
#include "app/auth.hpp"
#include "support.hpp"
#include "temp_file.hpp"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <cstdlib>
#include <fstream>

using namespace sessiond;
using Catch::Matchers::Contains;
using json = nlohmann::json;
using test::client;

namespace {

const std::string api_token = "api-Zk3v9QmT2wLx8RbN4sHd";
const std::string admin_token = "adm-Pq7Wn2Xc5Vb8Lk1Jh6Gf";
const std::string rotated_token = "api-rotated-Ty4Ue6Io8Pa0";

struct running_node {
  app::node node;
  std::uint16_t port;
  explicit running_node(config::config c) : node(std::move(c)), port(node.start()) {
    REQUIRE(test::eventually([&] { return node.stats().redis_up; }));
  }
};

struct auth_setup {
  test::temp_file api{"# API tokens\n" + api_token + "\n"};
  test::temp_file admin{admin_token + "\n"};
  config::config cfg(bool protect_metrics = false) const {
    auto c = test::test_config();
    c.auth.api_tokens_file = api.path;
    c.auth.admin_tokens_file = admin.path;
    c.auth.protect_metrics = protect_metrics;
    return c;
  }
};

std::map<std::string, std::string> bearer(const std::string& token) {
  return {{"Authorization", "Bearer " + token}};
}

std::string session_body() {
  return R"({"user_id":"u1","data":{"k":"v"}})";
}

void check_problem(const test::reply& r, int status, const std::string& type) {
  CHECK(r.status == status);
  CHECK(r.header("Content-Type") == "application/problem+json");
  auto j = json::parse(r.body);
  CHECK(j["status"] == status);
  CHECK(j["type"] == "urn:sessiond:problem:" + type);
}

} // namespace

TEST_CASE("with a tokens file, a request without a token answers 401 and changes nothing") {
  auth_setup s;
  running_node n(s.cfg());
  client c(n.port);
  auto put = c.put("/v1/sessions/a1", session_body());
  check_problem(put, 401, "unauthorized");
  CHECK(put.header("WWW-Authenticate") == "Bearer realm=\"sessiond\"");
  check_problem(c.get("/v1/users/u1/sessions"), 401, "unauthorized");
  check_problem(c.get("/v1/queues"), 401, "unauthorized");
  CHECK(c.get("/v1/sessions/a1", bearer(api_token)).status == 404); // the PUT wrote nothing
}

TEST_CASE("a wrong token answers 401 invalid_token; the API token reads and writes sessions") {
  auth_setup s;
  running_node n(s.cfg());
  client c(n.port);
  auto wrong = c.put("/v1/sessions/a2", session_body(), bearer("not-a-token-of-this-node"));
  check_problem(wrong, 401, "unauthorized");
  CHECK(wrong.header("WWW-Authenticate") == "Bearer realm=\"sessiond\", error=\"invalid_token\"");
  CHECK(wrong.body.find("not-a-token-of-this-node") == std::string::npos);
  CHECK(c.put("/v1/sessions/a2", session_body(), {{"Authorization", "Basic YTpi"}}).status == 401);
  CHECK(c.put("/v1/sessions/a2", session_body(), bearer(api_token)).status == 201);
  CHECK(c.get("/v1/sessions/a2", {{"Authorization", "bearer " + api_token}}).status == 200);
  CHECK(c.del("/v1/sessions/a2", bearer(admin_token)).status == 204);
}

TEST_CASE("an API token on the admin routes and the status JSON answers 403; an admin token calls "
          "them") {
  auth_setup s;
  running_node n(s.cfg());
  client c(n.port);
  for (const char* path : {"/v1/admin/sync/rejected", "/v1/status", "/v1/cluster"}) {
    CAPTURE(path);
    auto r = c.get(path, bearer(api_token));
    check_problem(r, 403, "forbidden");
    CHECK(r.header("WWW-Authenticate") ==
          "Bearer realm=\"sessiond\", error=\"insufficient_scope\"");
    CHECK(c.get(path, bearer(admin_token)).status == 200);
  }
  auto requeue =
      c.call(test::bhttp::verb::post, "/v1/admin/sync/rejected/requeue", "", bearer(api_token));
  check_problem(requeue, 403, "forbidden");
  CHECK(c.call(test::bhttp::verb::post, "/v1/admin/sync/rejected/requeue", "", bearer(admin_token))
            .status == 200);
}

TEST_CASE("/healthz and /readyz answer without a token; /metrics and / follow protect_metrics") {
  auth_setup s;
  {
    running_node n(s.cfg(false));
    client c(n.port);
    CHECK(c.get("/healthz").status == 200);
    CHECK(test::eventually([&] { return c.get("/readyz").status == 200; }));
    CHECK(c.get("/metrics").status == 200);
    CHECK(c.get("/").status == 200);
  }
  running_node n(s.cfg(true));
  client c(n.port);
  CHECK(c.get("/healthz").status == 200);
  CHECK(test::eventually([&] { return c.get("/readyz").status == 200; }));
  check_problem(c.get("/metrics"), 401, "unauthorized");
  check_problem(c.get("/"), 401, "unauthorized");
  CHECK(c.get("/", bearer(api_token)).status == 200);
  auto scrape = c.get("/metrics", bearer(api_token));
  REQUIRE(scrape.status == 200);
  CHECK_THAT(scrape.body, Contains("sessiond_auth_failures_total{reason=\"missing\"} 2"));
  CHECK_THAT(scrape.body, Contains("sessiond_auth_tokens{role=\"admin\"} 1"));
  CHECK_THAT(
      scrape.body,
      Contains("sessiond_http_requests_total{method=\"GET\",route=\"/metrics\",status=\"401\"} 1"));
  // promtool (Debian's prometheus package) accepts the exposition with the auth families in it.
  char path[] = "/tmp/sessiond-auth-metrics-XXXXXX";
  int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  REQUIRE(::write(fd, scrape.body.data(), scrape.body.size()) ==
          static_cast<ssize_t>(scrape.body.size()));
  close(fd);
  int rc = std::system((std::string("promtool check metrics < ") + path + " 2>&1").c_str());
  unlink(path);
  CHECK(rc == 0);
}

TEST_CASE("reload_auth (what SIGHUP runs) rotates the tokens without a restart") {
  auth_setup s;
  running_node n(s.cfg());
  client c(n.port);
  REQUIRE(c.get("/v1/sessions/r1", bearer(api_token)).status == 404);
  s.api.write(rotated_token + "\n");
  CHECK(n.node.reload_auth());
  CHECK(c.get("/v1/sessions/r1", bearer(rotated_token)).status == 404);
  check_problem(c.get("/v1/sessions/r1", bearer(api_token)), 401, "unauthorized");
  CHECK(c.get("/v1/status", bearer(admin_token)).status == 200); // the admin file was re-read too
}

TEST_CASE("a tokens file that cannot be used at reload keeps the tokens loaded before") {
  auth_setup s;
  running_node n(s.cfg());
  client c(n.port);
  s.api.write(rotated_token + "\nshort-token\n");
  CHECK_FALSE(n.node.reload_auth());
  CHECK(c.get("/v1/sessions/k1", bearer(api_token)).status == 404);
  CHECK(c.get("/v1/sessions/k1", bearer(rotated_token)).status == 401);
  s.api.write("# emptied by mistake\n");
  CHECK_FALSE(n.node.reload_auth());
  std::remove(s.admin.path.c_str());
  CHECK_FALSE(n.node.reload_auth());
  CHECK(c.get("/v1/sessions/k1", bearer(api_token)).status == 404);
  CHECK(c.get("/v1/status", bearer(admin_token)).status == 200);
  auto scrape = c.get("/metrics");
  CHECK_THAT(scrape.body, Contains("sessiond_auth_reloads_total{result=\"failed\"} 3"));
  CHECK_THAT(scrape.body, Contains("sessiond_auth_reloads_total{result=\"ok\"} 0"));
}

TEST_CASE("a tokens file that cannot be used stops the node's start with one line naming it") {
  test::temp_file bad("api-token-with a-space-inside\n");
  auto c = test::test_config();
  c.auth.api_tokens_file = bad.path;
  app::node node(c);
  try {
    node.start();
    FAIL("the node started with a bad tokens file");
  } catch (const config::config_error& e) {
    std::string what = e.what();
    CHECK_THAT(what, Contains("config: auth: tokens file \"" + bad.path + "\""));
    CHECK_THAT(what, Contains("whitespace"));
    CHECK_THAT(what, Contains("(line 1)"));
    CHECK(what.find("a-space-inside") == std::string::npos);
  }
}

TEST_CASE("after 20 failed authentications an address gets 429 with Retry-After, even with a "
          "valid token") {
  auth_setup s;
  running_node n(s.cfg());
  client c(n.port);
  for (int i = 0; i < 20; ++i)
    REQUIRE(c.get("/v1/sessions/x", bearer("guess-" + std::to_string(i))).status == 401);
  auto blocked = c.get("/v1/sessions/x", bearer(api_token));
  check_problem(blocked, 429, "too-many-auth-failures");
  auto retry = std::stoi(blocked.header("Retry-After"));
  CHECK(retry >= 9);
  CHECK(retry <= 10);
  CHECK(c.get("/healthz").status == 200); // still open
  auto scrape = client(n.port).get("/metrics");
  CHECK_THAT(scrape.body, Contains("sessiond_auth_failures_total{reason=\"unknown\"} 20"));
  CHECK_THAT(scrape.body, Contains("sessiond_auth_failures_total{reason=\"rate_limited\"} 1"));
}

TEST_CASE("without a tokens file every route stays open, as before") {
  running_node n(test::test_config());
  client c(n.port);
  CHECK(c.put("/v1/sessions/o1", session_body()).status == 201);
  CHECK(c.get("/v1/status").status == 200);
  CHECK(c.get("/v1/admin/sync/rejected").status == 200);
}

TEST_CASE("the open-API warning is given for a listener that is not loopback") {
  CHECK(app::loopback_listen("127.0.0.1:8080"));
  CHECK(app::loopback_listen("127.1.2.3:0"));
  CHECK(app::loopback_listen("localhost:8080"));
  CHECK(app::loopback_listen("[::1]:8080"));
  CHECK_FALSE(app::loopback_listen("0.0.0.0:8080"));
  CHECK_FALSE(app::loopback_listen("[::]:8080"));
  CHECK_FALSE(app::loopback_listen("10.0.0.5:8080"));
  CHECK_FALSE(app::loopback_listen("sessiond.internal:8080"));
}
