// Slots migrated while three nodes serve session load (`redis-cli --cluster reshard` on the Redis
// Cluster of scripts/test, there and back): the nodes follow ASK while a slot moves and MOVED
// once it moved, no request fails, and every acknowledged write is in Redis and, after a sync,
// in PostgreSQL at its version.
#include "adapters/redis/slots.hpp"
#include "cluster_nodes.hpp"
#include "model/key_layout.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

using namespace sessiond;
using namespace sessiond::test;
using namespace std::chrono_literals;
using json = nlohmann::json;

namespace {

constexpr int moving_slots = 300;

/// redis-cli --cluster reshard moving `slots` slots from the master `from` to `to` (node ids):
/// it takes the lowest-numbered slots of the source. Returns its output with its exit status.
std::string reshard(const std::string& seed, const std::string& from, const std::string& to) {
  return run_shell("redis-cli --cluster reshard " + seed + " --cluster-from " + from +
                   " --cluster-to " + to + " --cluster-slots " + std::to_string(moving_slots) +
                   " --cluster-yes >/tmp/sessiond-reshard-$$.log 2>&1; rc=$?; tail -3 "
                   "/tmp/sessiond-reshard-$$.log; rm -f /tmp/sessiond-reshard-$$.log; echo rc=$rc");
}

std::uint64_t redirects(client& c, const char* kind) {
  auto j = json::parse(c.get("/v1/cluster").body);
  return j["redis"]["redirects"][kind].get<std::uint64_t>();
}

} // namespace

TEST_CASE("slots resharded there and back under session load through three nodes: no request "
          "fails, nothing acknowledged is lost") {
  auto cfg = cluster_config();
  REQUIRE(wait_until(settled, 30s));
  std::string seed, from, to;
  std::vector<int> moving; // the source's lowest slots: the ones reshard moves
  {
    topology topo(cfg.redis.url);
    auto v = topo.c->cluster();
    REQUIRE(v.shards.size() == 3);
    // From the master holding the lowest slots to another: reshard takes the lowest slots of its
    // source, so the way back (from the target) takes exactly the slots that came.
    auto lowest = [](const redis::cluster_shard& sh) {
      int low = 16384;
      for (auto [lo, hi] : sh.slots)
        low = std::min(low, lo);
      return low;
    };
    std::sort(v.shards.begin(), v.shards.end(),
              [&](const auto& a, const auto& b) { return lowest(a) < lowest(b); });
    std::vector<int> slots;
    for (auto [lo, hi] : v.shards[0].slots)
      for (int s = lo; s <= hi; ++s)
        slots.push_back(s);
    std::sort(slots.begin(), slots.end());
    REQUIRE(slots.size() > static_cast<std::size_t>(moving_slots));
    moving.assign(slots.begin(), slots.begin() + moving_slots);
    seed = v.shards[0].master.address;
    from = v.shards[0].master.id;
    to = v.shards[1].master.id;
  }
  std::set<int> moving_set(moving.begin(), moving.end());

  // Sessions whose keys live in the slots that move, and some that stay.
  model::key_layout keys{cfg.redis.key_prefix};
  std::vector<std::string> ids;
  int staying = 0;
  for (int i = 0; ids.size() < 400; ++i) {
    auto id = "reshard" + std::to_string(i);
    bool moves = moving_set.count(redis::key_slot(keys.session(id))) > 0;
    if (moves || staying < 100) {
      staying += moves ? 0 : 1;
      ids.push_back(id);
    }
  }
  three_nodes n(cfg);
  for (std::size_t i = 0; i < ids.size(); ++i)
    REQUIRE(n[i].put("/v1/sessions/" + ids[i], body("rs" + std::to_string(i % 20), "{}")).status ==
            201);
  auto moved_before =
      redirects(n[0], "moved") + redirects(n[1], "moved") + redirects(n[2], "moved");
  auto asked_before = redirects(n[0], "ask") + redirects(n[1], "ask") + redirects(n[2], "ask");

  std::mutex mtx;
  std::map<std::string, int> acked; // id -> the highest version acknowledged
  std::map<int, int> failures;      // status -> count
  std::atomic<int> requests{0};
  std::atomic<bool> stop{false};
  auto load = [&](int w) {
    std::vector<std::unique_ptr<client>> nodes;
    for (const auto& node : n.nodes)
      nodes.push_back(std::make_unique<client>(node->port, 5s));
    for (int i = w; !stop; i += 3) {
      const auto& id = ids[static_cast<std::size_t>(i) % ids.size()];
      auto& c = *nodes[static_cast<std::size_t>(i / 3) % nodes.size()];
      auto path = "/v1/sessions/" + id;
      test::reply r;
      switch (i % 3) {
      case 0:
        r = c.put(path, body("rs" + std::to_string(i % 20), R"({"i":)" + std::to_string(i) + "}"));
        break;
      case 1:
        r = c.patch(path, R"({"p":)" + std::to_string(i) + "}");
        break;
      default:
        r = c.get(path);
      }
      ++requests;
      std::lock_guard<std::mutex> guard{mtx};
      if (r.status != 200 && r.status != 201) {
        ++failures[r.status];
        continue;
      }
      auto v = std::stoi(r.header("ETag").substr(1));
      auto& best = acked[id];
      best = std::max(best, v);
    }
  };
  std::vector<std::thread> threads;
  for (int w = 0; w < 3; ++w)
    threads.emplace_back(load, w);
  std::this_thread::sleep_for(500ms);
  auto there = reshard(seed, from, to);
  INFO("reshard there:\n" << there);
  bool moved_there = false;
  {
    topology topo(cfg.redis.url);
    auto to_address = topo.owner(moving.back()); // read while it is the target's
    moved_there = there.find("rc=0") != std::string::npos &&
                  std::all_of(moving.begin(), moving.end(),
                              [&](int s) { return topo.owner(s) == to_address; }) &&
                  to_address != seed;
  }
  std::this_thread::sleep_for(500ms);
  auto back = reshard(seed, to, from);
  INFO("reshard back:\n" << back);
  std::this_thread::sleep_for(500ms);
  stop = true;
  for (auto& t : threads)
    t.join();
  CHECK(moved_there);
  CHECK(back.find("rc=0") != std::string::npos);
  {
    topology topo(cfg.redis.url);
    CHECK(std::all_of(moving.begin(), moving.end(), [&](int s) { return topo.owner(s) == seed; }));
  }

  std::string failed;
  for (auto [status, count] : failures)
    failed += std::to_string(count) + " x " + std::to_string(status) + " ";
  INFO(requests << " requests; failed: " << failed);
  CHECK(requests > 1000);
  CHECK(failures.empty());
  // The nodes followed the moves: MOVED once a slot moved (and ASK while it moved, when a request
  // found its key already on the target).
  auto moved = redirects(n[0], "moved") + redirects(n[1], "moved") + redirects(n[2], "moved");
  auto asked = redirects(n[0], "ask") + redirects(n[1], "ask") + redirects(n[2], "ask");
  WARN("redirects during the reshards: " << moved - moved_before << " MOVED, "
                                         << asked - asked_before << " ASK; " << requests
                                         << " requests");
  CHECK(moved > moved_before);

  // Every acknowledged write is readable at its version or a later one, through any node...
  int lost = 0;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    auto r = n[i].get("/v1/sessions/" + ids[i]);
    if (r.status != 200 || json::parse(r.body)["version"].get<int>() < acked[ids[i]])
      ++lost;
  }
  CHECK(lost == 0);
  // ... and in PostgreSQL after a sync, at the version Redis holds.
  admin_sync(n[1]);
  auto rows = sql(cfg, "select session_id, version from user_session");
  std::map<std::string, int> in_pg;
  for (const auto& row : rows.rows)
    in_pg[row[0].value_or("")] = std::stoi(row[1].value_or("0"));
  int behind = 0;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    auto r = n[i].get("/v1/sessions/" + ids[i]);
    REQUIRE(r.status == 200);
    behind += in_pg[ids[i]] == json::parse(r.body)["version"].get<int>() ? 0 : 1;
  }
  CHECK(behind == 0);
  REQUIRE(wait_until(settled, 30s));
}
