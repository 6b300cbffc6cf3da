// The session API end to end against the real Redis: every path and status of the contract,
// concurrency on one session, preconditions, revocation and TTL expiry. With
// SESSIOND_TEST_NODES=3 (test_session_api_on_three_nodes) each case runs against three nodes
// sharing one key prefix, and every client sends its requests to the nodes in turn, so one
// session's PUT, PATCH, GET and DELETE go through different nodes.
#include "adapters/redis/client.hpp"
#include "model/key_layout.hpp"
#include "support.hpp"

#include <nlohmann/json.hpp>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <future>
#include <memory>
#include <thread>
#include <vector>

using namespace sessiond;
using json = nlohmann::json;

namespace {

/// SESSIOND_TEST_NODES, 1 when unset.
std::size_t node_count() {
  const char* v = std::getenv("SESSIOND_TEST_NODES");
  return v != nullptr && std::atoi(v) > 1 ? static_cast<std::size_t>(std::atoi(v)) : 1;
}

/// node_count() nodes of one config (their own node ids), as a deployment runs them.
struct running_node {
  std::vector<std::unique_ptr<app::node>> nodes;
  std::vector<std::uint16_t> ports;
  std::uint16_t port; ///< the first node's: for what one node answers alone (its /metrics)
  explicit running_node(const config::config& c, const model::clock& clk = model::system_clock()) {
    for (std::size_t i = 0; i < node_count(); ++i) {
      auto ci = c;
      if (i > 0)
        ci.node.id = c.node.id + "-" + std::to_string(i);
      nodes.push_back(std::make_unique<app::node>(std::move(ci), clk));
      ports.push_back(nodes.back()->start());
      REQUIRE(test::eventually([&] { return nodes.back()->stats().redis_up; }));
    }
    port = ports.front();
  }
};

/// One keep-alive connection to each node; each call goes to the next node in turn.
class client {
public:
  explicit client(const running_node& n) {
    for (auto p : n.ports)
      conns_.push_back(std::make_unique<test::client>(p));
  }
  /// One node only.
  explicit client(std::uint16_t port) { conns_.push_back(std::make_unique<test::client>(port)); }

  test::reply call(test::bhttp::verb verb, const std::string& target, const std::string& body = "",
                   std::map<std::string, std::string> headers = {}) {
    return next().call(verb, target, body, std::move(headers));
  }
  test::reply get(const std::string& t, std::map<std::string, std::string> h = {}) {
    return next().get(t, std::move(h));
  }
  test::reply put(const std::string& t, const std::string& b,
                  std::map<std::string, std::string> h = {}) {
    return next().put(t, b, std::move(h));
  }
  test::reply patch(const std::string& t, const std::string& b,
                    std::map<std::string, std::string> h = {}) {
    return next().patch(t, b, std::move(h));
  }
  test::reply del(const std::string& t, std::map<std::string, std::string> h = {}) {
    return next().del(t, std::move(h));
  }

private:
  test::client& next() { return *conns_[turn_++ % conns_.size()]; }
  std::vector<std::unique_ptr<test::client>> conns_;
  std::size_t turn_ = 0;
};

std::string body(const std::string& uid, const std::string& data = R"({"k":"v"})") {
  return R"({"user_id":")" + uid + R"(","data":)" + data + "}";
}

} // namespace

TEST_CASE("PUT creates (201) then replaces (200) a session, GET reads it with its ETag") {
  running_node n(test::test_config());
  client c(n);
  auto created = c.put("/v1/sessions/s1", body("u1", R"({"a":1})"));
  REQUIRE(created.status == 201);
  CHECK(created.header("ETag") == "\"1\"");
  CHECK(created.header("Location") == "/v1/sessions/s1");
  auto j = json::parse(created.body);
  CHECK(j["id"] == "s1");
  CHECK(j["user_id"] == "u1");
  CHECK(j["data"]["a"] == 1);
  CHECK(j["version"] == 1);
  CHECK(j["status"] == "ACTIVE");
  CHECK(j["last_activity_at"] == j["created_at"]);
  auto replaced = c.put("/v1/sessions/s1", body("u1", R"({"b":2})"));
  CHECK(replaced.status == 200);
  CHECK(replaced.header("ETag") == "\"2\"");
  CHECK(json::parse(replaced.body)["created_at"] == j["created_at"]);
  auto got = c.get("/v1/sessions/s1");
  REQUIRE(got.status == 200);
  CHECK(got.header("ETag") == "\"2\"");
  CHECK(json::parse(got.body)["data"] == json::parse(R"({"b":2})"));
  CHECK(c.get("/v1/sessions/s1", {{"If-None-Match", "\"2\""}}).status == 304);
  CHECK(c.get("/v1/sessions/nope").status == 404);
}

TEST_CASE("PATCH merges data (RFC 7396) and bumps the version") {
  running_node n(test::test_config());
  client c(n);
  REQUIRE(c.put("/v1/sessions/p1", body("u1", R"({"a":1,"b":{"c":2}})")).status == 201);
  auto r = c.patch("/v1/sessions/p1", R"({"b":{"c":null,"d":3},"e":4})");
  REQUIRE(r.status == 200);
  CHECK(r.header("ETag") == "\"2\"");
  CHECK(json::parse(r.body)["data"] == json::parse(R"({"a":1,"b":{"d":3},"e":4})"));
  CHECK(c.patch("/v1/sessions/missing", "{}").status == 404);
  CHECK(c.patch("/v1/sessions/p1", "[1]").status == 422);
  CHECK(c.patch("/v1/sessions/p1", "{bad").status == 400);
  CHECK(json::parse(c.get("/v1/sessions/p1").body)["version"] == 2);
}

TEST_CASE("preconditions: stale If-Match gets 412, If-None-Match * makes PUT create-only") {
  running_node n(test::test_config());
  client c(n);
  REQUIRE(c.put("/v1/sessions/c1", body("u1")).status == 201);
  REQUIRE(c.put("/v1/sessions/c1", body("u1")).status == 200);
  auto stale = c.put("/v1/sessions/c1", body("u1"), {{"If-Match", "\"1\""}});
  CHECK(stale.status == 412);
  CHECK(stale.header("Content-Type") == "application/problem+json");
  CHECK(c.patch("/v1/sessions/c1", "{}", {{"If-Match", "\"1\""}}).status == 412);
  CHECK(c.del("/v1/sessions/c1", {{"If-Match", "\"1\""}}).status == 412);
  CHECK(c.put("/v1/sessions/c1", body("u1"), {{"If-Match", "\"2\""}}).status == 200);
  CHECK(c.put("/v1/sessions/c1", body("u1"), {{"If-None-Match", "*"}}).status == 412);
  CHECK(c.put("/v1/sessions/c2", body("u1"), {{"If-None-Match", "*"}}).status == 201);
  CHECK(c.put("/v1/sessions/c3", body("u1"), {{"If-Match", "*"}}).status == 412);
  CHECK(c.put("/v1/sessions/c1", body("u1"), {{"If-Match", "W/\"3\""}}).status == 400);
  CHECK(json::parse(c.get("/v1/sessions/c1").body)["version"] == 3);
}

TEST_CASE("DELETE revokes: 204, then 404, and a late PUT cannot bring the session back") {
  running_node n(test::test_config());
  client c(n);
  REQUIRE(c.put("/v1/sessions/r1", body("u1")).status == 201);
  CHECK(c.del("/v1/sessions/r1").status == 204);
  CHECK(c.get("/v1/sessions/r1").status == 404);
  CHECK(c.del("/v1/sessions/r1").status == 404);
  CHECK(c.patch("/v1/sessions/r1", R"({"x":1})").status == 404);
  // A save that was in flight when the session was revoked arrives late, with the old version.
  auto late = c.put("/v1/sessions/r1", body("u1"), {{"If-Match", "\"1\""}});
  CHECK(late.status >= 400);
  auto late_blind = c.put("/v1/sessions/r1", body("u1"));
  CHECK(late_blind.status == 410);
  CHECK(c.get("/v1/sessions/r1").status == 404);
  CHECK(c.del("/v1/sessions/never-existed").status == 404);
}

TEST_CASE("a user's sessions are listed and revoked all at once") {
  running_node n(test::test_config());
  client c(n);
  for (int i = 0; i < 5; ++i)
    REQUIRE(c.put("/v1/sessions/us" + std::to_string(i), body("alice")).status == 201);
  REQUIRE(c.put("/v1/sessions/other", body("bob")).status == 201);
  auto list = c.get("/v1/users/alice/sessions");
  REQUIRE(list.status == 200);
  CHECK(json::parse(list.body)["sessions"].size() == 5);
  // Moving a session to another user moves it between the indexes.
  REQUIRE(c.put("/v1/sessions/us4", body("bob")).status == 200);
  CHECK(json::parse(c.get("/v1/users/alice/sessions").body)["sessions"].size() == 4);
  auto revoked = c.del("/v1/users/alice/sessions");
  REQUIRE(revoked.status == 200);
  CHECK(json::parse(revoked.body)["revoked"] == 4);
  CHECK(json::parse(c.get("/v1/users/alice/sessions").body)["sessions"].empty());
  CHECK(c.get("/v1/sessions/us0").status == 404);
  CHECK(c.get("/v1/sessions/other").status == 200);
  CHECK(json::parse(c.get("/v1/users/nobody/sessions").body)["sessions"].empty());
}

TEST_CASE("100 concurrent PATCHes to one session all land") {
  running_node n(test::test_config());
  REQUIRE(client(n).put("/v1/sessions/hot", body("u1", "{}")).status == 201);
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 10; ++t)
    threads.emplace_back([&, t] {
      client c(n);
      for (int i = 0; i < 10; ++i) {
        auto field = "f" + std::to_string(t * 10 + i);
        if (c.patch("/v1/sessions/hot", "{\"" + field + "\":true}").status == 200)
          ok++;
      }
    });
  for (auto& t : threads)
    t.join();
  CHECK(ok == 100);
  auto j = json::parse(client(n).get("/v1/sessions/hot").body);
  CHECK(j["data"].size() == 100);
  CHECK(j["version"] == 101);
}

TEST_CASE("concurrent PATCHes changing different fields of one session each keep their change") {
  // Through several nodes a PATCH can lose its compare-and-set to another node's: it must merge
  // its own patch again on the new version, not write back the document it merged before (which
  // would undo the other node's change).
  running_node n(test::test_config());
  REQUIRE(client(n).put("/v1/sessions/fields", body("u1", "{}")).status == 201);
  constexpr int writers = 4, rounds = 25;
  std::atomic<int> ok{0}, stale{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < writers; ++t)
    threads.emplace_back([&, t] {
      client c(n);
      for (int skip = 0; skip < t; ++skip) // start each writer on another node
        c.get("/healthz");
      auto field = "f" + std::to_string(t);
      for (int i = 0; i < rounds; ++i) {
        auto r = c.patch("/v1/sessions/fields", "{\"" + field + "\":" + std::to_string(i) + "}");
        if (r.status != 200)
          continue;
        ok++;
        if (json::parse(r.body)["data"][field] != i)
          stale++;
      }
    });
  for (auto& t : threads)
    t.join();
  CHECK(ok == writers * rounds);
  CHECK(stale == 0);
  auto j = json::parse(client(n).get("/v1/sessions/fields").body);
  for (int t = 0; t < writers; ++t)
    CHECK(j["data"]["f" + std::to_string(t)] == rounds - 1);
  CHECK(j["version"] == writers * rounds + 1);
}

TEST_CASE("a session expires after its idle TTL and reads slide it") {
  auto cfg = test::test_config();
  cfg.sessions.touch_interval_s = 0;
  running_node n(cfg);
  client c(n);
  REQUIRE(c.put("/v1/sessions/short", R"({"user_id":"u","data":{},"ttl_s":1})").status == 201);
  REQUIRE(c.put("/v1/sessions/slide", R"({"user_id":"u","data":{},"ttl_s":2})").status == 201);
  // Keep reading `slide` more often than its TTL: it stays; `short` is never read again.
  for (int i = 0; i < 4; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(700));
    REQUIRE(c.get("/v1/sessions/slide").status == 200);
  }
  CHECK(c.get("/v1/sessions/short").status == 404);
  // Reads slide the TTL, so wait it out without reading.
  std::this_thread::sleep_for(std::chrono::milliseconds(2300));
  CHECK(c.get("/v1/sessions/slide").status == 404);
  CHECK(json::parse(c.get("/v1/users/u/sessions").body)["sessions"].empty());
}

TEST_CASE("healthz answers 200 and readyz names Redis") {
  running_node n(test::test_config());
  client c(n);
  CHECK(c.get("/healthz").status == 200);
  auto r = c.get("/readyz");
  CHECK(r.status == 200);
  CHECK(json::parse(r.body)["checks"]["redis"] == "up");
}

TEST_CASE("a body over the configured limit answers 413 and changes nothing") {
  auto cfg = test::test_config();
  cfg.http.max_body_bytes = 2048;
  running_node n(cfg);
  client c(n);
  auto big = c.put("/v1/sessions/big", body("u", "{\"v\":\"" + std::string(4096, 'x') + "\"}"));
  CHECK(big.status == 413);
  CHECK(client(n).get("/v1/sessions/big").status == 404);
}

namespace {

/// The value of one sample line `name{labels} value` in a Prometheus text scrape, or -1.
double sample_value(const std::string& text, const std::string& series) {
  auto pos = text.find("\n" + series + " ");
  if (pos == std::string::npos)
    return -1;
  return std::stod(text.substr(pos + series.size() + 2));
}

} // namespace

TEST_CASE("/metrics counts requests exactly by route, method and status, and promtool accepts it") {
  running_node n(test::test_config());
  client c(n.port); // one node's counters: its requests only
  REQUIRE(c.put("/v1/sessions/m1", body("u1")).status == 201);
  REQUIRE(c.put("/v1/sessions/m1", body("u1")).status == 200);
  for (int i = 0; i < 3; ++i)
    REQUIRE(c.get("/v1/sessions/m1").status == 200);
  REQUIRE(c.get("/v1/sessions/none").status == 404);
  REQUIRE(c.get("/v1/sessions/bad%20id").status == 400);
  auto scrape = c.get("/metrics");
  REQUIRE(scrape.status == 200);
  CHECK(scrape.header("Content-Type") == "text/plain; version=0.0.4; charset=utf-8");
  const auto& t = scrape.body;
  auto series = [](const char* method, const char* status) {
    return std::string("sessiond_http_requests_total{method=\"") + method +
           "\",route=\"/v1/sessions/{id}\",status=\"" + status + "\"}";
  };
  CHECK(sample_value(t, series("PUT", "201")) == 1);
  CHECK(sample_value(t, series("PUT", "200")) == 1);
  CHECK(sample_value(t, series("GET", "200")) == 3);
  CHECK(sample_value(t, series("GET", "404")) == 1);
  CHECK(sample_value(t, series("GET", "400")) == 1);
  CHECK(sample_value(t, "sessiond_redis_up") == 1);
  CHECK(sample_value(t, "sessiond_backpressure_rejections_total") == 0);
  CHECK(t.find("process_resident_memory_bytes ") != std::string::npos);
  CHECK(sample_value(t, "sessiond_http_request_duration_seconds_bucket{method=\"GET\","
                        "route=\"/v1/sessions/{id}\",le=\"+Inf\"}") == 5);

  // promtool (Debian's prometheus package) checks the exposition on the live scrape.
  char path[] = "/tmp/sessiond-metrics-XXXXXX";
  int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  REQUIRE(write(fd, t.data(), t.size()) == static_cast<ssize_t>(t.size()));
  close(fd);
  auto cmd = std::string("promtool check metrics < ") + path + " 2>&1";
  int rc = std::system(cmd.c_str());
  unlink(path);
  CHECK(rc == 0);
}

TEST_CASE("metrics.enabled = false turns /metrics off") {
  auto cfg = test::test_config();
  cfg.metrics.enabled = false;
  running_node n(cfg);
  CHECK(client(n).get("/metrics").status == 404);
}

TEST_CASE("the per-user index: a listing trims ids of revoked or expired sessions, and the index "
          "expires with the longest a session of it can live") {
  model::manual_clock clk(model::system_clock().now_ms());
  auto cfg = test::test_config();
  cfg.sessions.touch_interval_s = 0;
  cfg.sessions.max_lifetime_s = 120;
  running_node n(cfg, clk);
  client c(n);
  test::redis_probe rc(cfg.redis.url);
  auto index = model::key_layout{cfg.redis.key_prefix}.user("trim");
  auto members = [&] {
    std::vector<std::string> out;
    for (auto& e : rc.command({"ZRANGE", index, "0", "-1"}).elements)
      out.push_back(e.str);
    std::sort(out.begin(), out.end());
    return out;
  };
  auto listed = [&] {
    std::vector<std::string> out;
    auto body = json::parse(c.get("/v1/users/trim/sessions").body);
    for (auto& s : body["sessions"])
      out.push_back(s["id"]);
    std::sort(out.begin(), out.end());
    return out;
  };
  REQUIRE(c.put("/v1/sessions/short", R"({"user_id":"trim","data":{},"ttl_s":1})").status == 201);
  REQUIRE(c.put("/v1/sessions/gone", R"({"user_id":"trim","data":{},"ttl_s":60})").status == 201);
  REQUIRE(c.put("/v1/sessions/kept", R"({"user_id":"trim","data":{},"ttl_s":60})").status == 201);
  CHECK(members() == std::vector<std::string>{"gone", "kept", "short"});
  REQUIRE(c.del("/v1/sessions/gone").status == 204);
  clk.advance_ms(1500); // "short" is past its expiry
  CHECK(listed() == std::vector<std::string>{"kept"});
  CHECK(test::eventually([&] { return members() == std::vector<std::string>{"kept"}; }));
  // The index lives as long as its newest session can (max_lifetime_s), so a user who never
  // comes back leaves nothing behind.
  auto pttl = rc.command({"PTTL", index}).integer;
  CHECK(pttl > 0);
  CHECK(pttl <= 120000);
}
