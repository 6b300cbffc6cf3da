// GET /v1/cluster against the real Redis: the nodes sharing it and the Redis topology. Run twice
// by ctest: on the single Redis (REDIS_URL) and on the Redis Cluster (test_cluster_api_on_cluster).
#include "queue_support.hpp"

#include <cstdlib>
#include <string>

using namespace sessiond;
using test::body_of;
using test::client;

TEST_CASE("GET /v1/cluster lists the live nodes and the Redis masters with their slots") {
  auto cfg = test::test_config();
  cfg.node.id = "cluster-api-a";
  test::queue_node a(cfg);
  auto cfg_b = cfg;
  cfg_b.node.id = "cluster-api-b";
  test::queue_node b(cfg_b);
  client c(a.port);
  auto r = c.get("/v1/cluster");
  REQUIRE(r.status == 200);
  auto j = body_of(r);
  CHECK(j["node"] == "cluster-api-a");
  int seen = 0;
  for (const auto& n : j["nodes"]) {
    if (n["id"] != "cluster-api-a" && n["id"] != "cluster-api-b")
      continue; // other tests' nodes may share the Redis
    ++seen;
    CHECK(n["live"] == true);
    CHECK(n["self"] == (n["id"] == "cluster-api-a"));
    CHECK(n["mode"] == cfg.sessions.mode);
    CHECK(n["version"].is_string());
    CHECK(n["address"] == cfg.http.listen);
    CHECK(n["age_ms"].get<long long>() >= 0);
  }
  CHECK(seen == 2);

  const auto& redis = j["redis"];
  bool on_cluster = std::string(std::getenv("REDIS_URL")).find(',') != std::string::npos;
  CHECK(redis["cluster"] == on_cluster);
  CHECK(redis["all_slots_connected"] == true);
  CHECK(redis["slots_unserved"] == 0);
  long long slots = 0;
  for (const auto& m : redis["masters"]) {
    CHECK(m["connected"] == true);
    slots += m["slot_count"].get<long long>();
    if (on_cluster) {
      CHECK(m["id"].get<std::string>().size() == 40);
      CHECK(m["replicas"].size() == 1);
      CHECK(m["slots"].size() >= 1);
    }
  }
  CHECK(slots == 16384);
  CHECK(redis["masters"].size() == (on_cluster ? 3u : 1u));
  // The same topology on /v1/status, for the status page.
  CHECK(body_of(c.get("/v1/status"))["redis"]["topology"]["cluster"] == on_cluster);
  CHECK(c.call(test::bhttp::verb::post, "/v1/cluster").status == 405);
}
