// GET /v1/cluster against the real Redis: the nodes sharing it and the Redis topology. Run twice
// by ctest: on the single Redis (REDIS_URL) and on the Redis Cluster (test_cluster_api_on_cluster).
#include "model/key_layout.hpp"
#include "pg_support.hpp"
#include "queue_support.hpp"

#include <cstdlib>
#include <set>
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

TEST_CASE("GET /v1/cluster shows which sync partitions each node drained, and a partition's "
          "sessions go to whichever node syncs next") {
  auto cfg = test::pg_config(); // sync only on POST /v1/admin/sync
  cfg.node.id = "partitions-a";
  test::running_node a(cfg);
  auto cfg_b = cfg;
  cfg_b.node.id = "partitions-b";
  test::running_node b(cfg_b);
  client ca(a.port), cb(b.port);
  auto put = [&](client& c, const std::string& id) {
    REQUIRE(c.put("/v1/sessions/" + id, R"({"user_id":"u","data":{}})").status == 201);
    return model::partition_of(id);
  };
  auto partitions_of = [&](const nlohmann::json& view, const std::string& node) {
    std::set<std::size_t> out;
    for (const auto& n : view["nodes"])
      if (n["id"] == node) {
        CHECK(n["sync"]["enabled"] == true);
        CHECK(n["sync"]["partitions"] == model::sync_partitions);
        CHECK(n["sync"]["holding_count"] == 0); // no run in progress: every lease released
        for (const auto& r : n["sync"]["last_run_partitions"])
          for (auto p = r[0].get<std::size_t>(); p <= r[1].get<std::size_t>(); ++p)
            out.insert(p);
        CHECK(n["sync"]["last_run_partition_count"] == out.size());
      }
    return out;
  };

  std::set<std::size_t> first, second;
  for (int i = 0; i < 40; ++i)
    first.insert(put(ca, "pa" + std::to_string(i)));
  CHECK(test::admin_sync(ca)["synced"] == 40);
  auto view = body_of(cb.get("/v1/cluster"));
  CHECK(partitions_of(view, "partitions-a") == first);
  CHECK(partitions_of(view, "partitions-b").empty());

  // Written through a, synced by b: the partitions belong to no node, only to the run that
  // holds their lease.
  for (int i = 0; i < 40; ++i)
    second.insert(put(ca, "pb" + std::to_string(i)));
  CHECK(test::admin_sync(cb)["synced"] == 40);
  view = body_of(ca.get("/v1/cluster"));
  CHECK(partitions_of(view, "partitions-b") == second);
  CHECK(partitions_of(view, "partitions-a") == first); // a's last run, as it was
}
