// Sessions through three nodes on the Redis Cluster that scripts/test starts
// (SESSIOND_TEST_REDIS_CLUSTER_URL): keys spread over every master, any node serves any session,
// and "log out everywhere" reaches a user's sessions on every master, also one whose index add
// was lost (a node that died between the write and the add).
#include "actors/redis_scripts.hpp"
#include "binary_support.hpp"
#include "cluster_nodes.hpp"
#include "model/key_layout.hpp"
#include "model/ttl.hpp"

#include <catch2/catch.hpp>
#include <fcntl.h>
#include <nlohmann/json.hpp>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
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

TEST_CASE("a node killed with SIGKILL while it syncs under load: the others take its partitions "
          "within a lease period and PostgreSQL holds every acknowledged write") {
  auto cfg = cluster_config();
  cfg.postgres.statement_timeout_ms = 1000; // sync leases live statement timeout + 5 s
  const auto lease_ms = cfg.postgres.statement_timeout_ms + 5000;
  auto victim_port = free_port();
  pid_t victim = test::spawn_node(cfg, "victim", 100, victim_port);
  REQUIRE(test::becomes_ready(victim_port));
  auto ca = cfg;
  ca.node.id = "survivor-a";
  running_node a(ca); // syncs only when asked (pg_config: an hour apart)
  auto cb = cfg;
  cb.node.id = "survivor-b";
  running_node b(cb);

  std::mutex mtx;
  std::map<std::string, int> acked;
  std::atomic<bool> stop{false};
  auto writer = [&](std::uint16_t port, const std::string& tag) {
    try {
      client c(port, std::chrono::seconds(2));
      for (int i = 0; !stop; ++i) {
        auto id = tag + "-" + std::to_string(i % 300);
        auto r = c.put("/v1/sessions/" + id, body("nk", R"({"i":)" + std::to_string(i) + "}"));
        if (r.status < 300) {
          std::lock_guard<std::mutex> guard{mtx};
          acked[id] = std::stoi(r.header("ETag").substr(1));
        }
      }
    } catch (const std::exception&) {
      // the victim's connection died with it: the write in flight was never acknowledged
    }
  };
  std::vector<std::thread> writers;
  writers.emplace_back(writer, victim_port, "v0");
  writers.emplace_back(writer, victim_port, "v1");
  writers.emplace_back(writer, a.port, "a0");
  writers.emplace_back(writer, b.port, "b0");

  // Killed while it holds sync leases (a run in progress), when it can be caught so.
  redis_probe probe(cfg.redis.url);
  model::key_layout keys{cfg.redis.key_prefix};
  auto held_by_victim = [&] {
    int held = 0;
    for (const auto& k : probe.keys(cfg.redis.key_prefix + "sync:lease{*")) {
      auto v = probe.command({"GET", k});
      held += v.type == redis::reply::kind::string && v.str == "victim" ? 1 : 0;
    }
    return held;
  };
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));
  int held = 0;
  for (int tries = 0; tries < 200 && (held = held_by_victim()) == 0; ++tries) {
  }
  kill(victim, SIGKILL);
  waitpid(victim, nullptr, 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  stop = true;
  for (auto& t : writers)
    t.join();
  std::size_t from_victim = 0;
  for (const auto& [id, v] : acked)
    from_victim += id[0] == 'v' ? 1 : 0;
  REQUIRE(from_victim > 100);
  WARN("the victim held " << held << " sync leases when it was killed");

  // The survivors sync until no partition is skipped for a lease (the victim's lapse).
  auto started = std::chrono::steady_clock::now();
  for (int run = 0;; ++run) {
    // A fresh connection each time: one opened before a long run would pass the node's
    // http.header_timeout_ms before its request.
    client c(run % 2 == 0 ? a.port : b.port);
    auto r = admin_sync(c);
    if (r["skipped_sets"] == 0)
      break;
    REQUIRE(std::chrono::steady_clock::now() - started <
            std::chrono::milliseconds(lease_ms + 10000));
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::steady_clock::now() - started)
                  .count();
  WARN("the survivors synced every partition " << took << " ms after the kill (lease " << lease_ms
                                               << " ms)");
  CHECK(took <= lease_ms + 5000); // the lease lapses, then one run drains what it held
  CHECK(held_by_victim() == 0);

  std::map<std::string, int> stored;
  for (auto& r : sql(cfg, "select session_id, version from user_session").rows)
    stored[*r[0]] = std::stoi(*r[1]);
  int behind = 0;
  for (const auto& [id, v] : acked)
    behind += stored[id] < v ? 1 : 0;
  INFO(acked.size() << " sessions acknowledged, " << from_victim << " through the victim");
  CHECK(behind == 0);
}
