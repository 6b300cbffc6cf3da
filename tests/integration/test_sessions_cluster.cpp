// Sessions through three nodes on the Redis Cluster that scripts/test starts
// (SESSIOND_TEST_REDIS_CLUSTER_URL): keys spread over every master, any node serves any session,
// and "log out everywhere" reaches a user's sessions on every master, also one whose index add
// was lost (a node that died between the write and the add).
#include "actors/redis_scripts.hpp"
#include "cluster_nodes.hpp"
#include "model/key_layout.hpp"
#include "model/ttl.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

using namespace sessiond;
using namespace sessiond::test;
using json = nlohmann::json;

TEST_CASE("10,000 sessions written through three nodes spread over every master, each read "
          "back through another node") {
  auto cfg = cluster_config();
  three_nodes n(cfg);
  constexpr int sessions = 10000;
  for (int i = 0; i < sessions; ++i)
    REQUIRE(n[i].put("/v1/sessions/spread" + std::to_string(i),
                     body("u" + std::to_string(i % 100), R"({"i":1})"))
                .status == 201);
  redis_probe probe(cfg.redis.url);
  auto per_master = probe.counts(cfg.redis.key_prefix + "s{*");
  REQUIRE(per_master.size() == 3);
  std::size_t total = 0;
  for (auto k : per_master)
    total += k;
  CHECK(total == sessions);
  for (auto k : per_master) {
    INFO("sessions per master: " << per_master[0] << ", " << per_master[1] << ", "
                                 << per_master[2]);
    CHECK(k >= sessions / 5);
  }
  // Any node serves any session: each is read through the node after the one that wrote it.
  int wrong = 0;
  for (int i = 0; i < sessions; i += 7)
    wrong += n[i + 1].get("/v1/sessions/spread" + std::to_string(i)).status == 200 ? 0 : 1;
  CHECK(wrong == 0);
}

TEST_CASE("log out everywhere through any node revokes a user's sessions on every master, also "
          "one whose index add was lost") {
  auto cfg = cluster_config();
  three_nodes n(cfg);
  model::key_layout keys{cfg.redis.key_prefix};
  std::vector<std::string> ids;
  for (int i = 0; i < 30; ++i) {
    ids.push_back("everywhere" + std::to_string(i));
    REQUIRE(n[i].put("/v1/sessions/" + ids.back(), body("alice", "{}")).status == 201);
  }
  redis_probe probe(cfg.redis.url);
  // The user's sessions live on more than one master.
  auto per_master = probe.counts(cfg.redis.key_prefix + "s{*}:everywhere*");
  int masters_holding = 0;
  for (auto k : per_master)
    masters_holding += k > 0 ? 1 : 0;
  CHECK(masters_holding >= 2);

  // A node died between a session's write and its index add: the write script ran, the add
  // never did. The sync finds it from its dirty record and adds it.
  actors::redis_scripts scripts;
  auto now = model::system_clock().now_ms();
  auto lost = std::string("everywhere-lost");
  auto w = probe.eval(scripts.write, {keys.session(lost), keys.dirty(model::partition_of(lost))},
                      {lost, "alice", "{}", std::to_string(now), "3600", "604800", "",
                       std::to_string(now + 3600000), "0"});
  REQUIRE(w.elements.size() > 1);
  CHECK(probe.command({"ZSCORE", keys.user("alice"), lost}).type == redis::reply::kind::nil);
  admin_sync(n[1]);
  CHECK(probe.command({"ZSCORE", keys.user("alice"), lost}).type != redis::reply::kind::nil);

  auto listed = json::parse(n[2].get("/v1/users/alice/sessions").body);
  CHECK(listed["sessions"].size() == 31);
  auto revoked = n[2].del("/v1/users/alice/sessions");
  REQUIRE(revoked.status == 200);
  CHECK(json::parse(revoked.body)["revoked"] == 31);
  ids.push_back(lost);
  int live = 0;
  for (std::size_t i = 0; i < ids.size(); ++i)
    live += n[i].get("/v1/sessions/" + ids[i]).status == 200 ? 1 : 0;
  CHECK(live == 0);
}

namespace {

/// How many of the cluster's six nodes (masters and replicas) hold `key` (READONLY lets a
/// replica answer for its master's slots).
int copies(const std::string& key) {
  const char* ports = std::getenv("SESSIOND_TEST_REDIS_CLUSTER_PORTS");
  REQUIRE(ports != nullptr);
  std::istringstream in(ports);
  int n = 0;
  for (std::string port; in >> port;) {
    auto out = run_shell("printf 'READONLY\\nEXISTS " + key + "\\n' | redis-cli -p " + port);
    n += out.find("\n1") != std::string::npos ? 1 : 0;
  }
  return n;
}

} // namespace

TEST_CASE("redis.wait_replicas = 1: a session write is acknowledged once its master's replica "
          "has it") {
  auto cfg = cluster_config();
  cfg.redis.wait_replicas = 1;
  running_node node(cfg);
  client c(node.port);
  model::key_layout keys{cfg.redis.key_prefix};
  for (int i = 0; i < 20; ++i) {
    auto id = "replicated" + std::to_string(i);
    REQUIRE(c.put("/v1/sessions/" + id, body("r", "{}")).status == 201);
    CHECK(copies(keys.session(id)) == 2); // on its master and, acknowledged, on the replica
    CHECK(c.patch("/v1/sessions/" + id, R"({"x":1})").status == 200);
    CHECK(c.del("/v1/sessions/" + id).status == 204);
  }
}

TEST_CASE("redis.wait_replicas more than the replicas there are: writes answer 503 with "
          "Retry-After, reads are served") {
  auto cfg = pg_config(); // the single Redis: no replica
  cfg.redis.wait_replicas = 1;
  cfg.redis.wait_timeout_ms = 50;
  running_node node(cfg);
  client c(node.port);
  auto r = c.put("/v1/sessions/unreplicated", body("r", "{}"));
  CHECK(r.status == 503);
  CHECK(!r.header("Retry-After").empty());
  CHECK(r.body.find("NOREPLICAS") != std::string::npos);
  // Not acknowledged: the master may or may not hold it; reads are served either way.
  auto got = c.get("/v1/sessions/unreplicated");
  CHECK((got.status == 200 || got.status == 404));
}
