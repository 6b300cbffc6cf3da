// Integration tests of the Redis client against the 3-master, 3-replica Redis Cluster that
// `scripts/services start --redis-cluster` runs (SESSIOND_TEST_REDIS_CLUSTER_URL: the seeds),
// and against the single Redis at REDIS_URL, which must not be taken for a cluster.
#include "adapters/redis/client.hpp"
#include "adapters/redis/slots.hpp"
#include "cluster_support.hpp"
#include "io_threads.hpp"

#include <catch2/catch.hpp>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

using namespace sessiond::redis;
using namespace std::chrono_literals;
using ms = std::chrono::milliseconds;
using steady = std::chrono::steady_clock;

namespace {

using sessiond::test::cli;
using sessiond::test::io_threads;

client_options options_from(const char* name) {
  const char* url = std::getenv(name);
  if (url == nullptr)
    FAIL(name << " is not set: run scripts/test, or `scripts/services start --redis-cluster` "
                 "and eval `scripts/services env`");
  client_options o;
  std::string error;
  if (!parse_url(url, o, error))
    FAIL(name << "=" << url << ": " << error);
  o.connections = 2;
  return o;
}

std::string unique_prefix() {
  std::random_device rd;
  return "sessiond:test:cluster:" + std::to_string(::getpid()) + ":" + std::to_string(rd()) + ":";
}

template <class Pred>
bool wait_until(Pred pred, ms limit) {
  auto end = steady::now() + limit;
  while (!pred()) {
    if (steady::now() > end)
      return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

struct result {
  errc e = errc::ok;
  reply r;
};

result call(client& c, std::vector<std::string> args) {
  auto p = std::make_shared<std::promise<result>>();
  auto f = p->get_future();
  c.command(0, std::move(args), [p](errc e, reply&& r) { p->set_value({e, std::move(r)}); });
  REQUIRE(f.wait_for(5s) == std::future_status::ready);
  return f.get();
}

result call_at(client& c, const std::string& address, std::vector<std::string> args) {
  auto p = std::make_shared<std::promise<result>>();
  auto f = p->get_future();
  c.command_at(address, 0, std::move(args), [p](errc e, reply&& r) {
    p->set_value({e, std::move(r)});
  });
  REQUIRE(f.wait_for(5s) == std::future_status::ready);
  return f.get();
}

void start_all(client& c) {
  c.start();
  REQUIRE(wait_until([&] { return c.all_slots_connected() && c.cluster().cluster; }, 10s));
}

/// The shard that owns `slot` now, as the client sees it.
const cluster_shard* owner(const cluster_view& v, int slot) {
  for (const auto& s : v.shards)
    for (auto [lo, hi] : s.slots)
      if (slot >= lo && slot <= hi)
        return &s;
  return nullptr;
}

int covered(const cluster_view& v) {
  int n = 0;
  for (const auto& s : v.shards)
    for (auto [lo, hi] : s.slots)
      n += hi - lo + 1;
  return n;
}

/// A key of `prefix` in a slot that `shard` owns.
std::string key_on(const cluster_view& v, const cluster_shard& shard, const std::string& prefix) {
  for (int i = 0;; ++i) {
    auto k = prefix + std::to_string(i);
    if (const auto* s = owner(v, key_slot(k));
        s != nullptr && s->master.address == shard.master.address)
      return k;
  }
}

} // namespace

TEST_CASE("a single Redis is not taken for a cluster") {
  io_threads t;
  client c(t.io, options_from("REDIS_URL"));
  c.start();
  REQUIRE(wait_until([&] { return c.connected(); }, 3s));
  CHECK(call(c, {"PING"}).r.str == "PONG");
  std::this_thread::sleep_for(100ms); // the CLUSTER probe has answered by now
  CHECK_FALSE(c.cluster().cluster);
  CHECK(c.masters().size() == 1);
  CHECK(c.all_slots_connected());
}

TEST_CASE("the masters and their slots are found from the seeds, a dead seed skipped") {
  io_threads t;
  auto o = options_from("SESSIOND_TEST_REDIS_CLUSTER_URL");
  // A first seed where nothing listens: the others are asked instead.
  o.seeds.insert(o.seeds.begin(), {o.host, o.port});
  o.host = "127.0.0.1";
  o.port = 1;
  client c(t.io, o);
  start_all(c);
  auto v = c.cluster();
  REQUIRE(v.shards.size() == 3);
  CHECK(covered(v) == slot_count);
  for (const auto& s : v.shards) {
    CHECK(s.connected);
    CHECK(s.master.id.size() == 40);
    CHECK(s.master.health == "online");
    CHECK(s.replicas.size() == 1);
  }
  CHECK(c.masters().size() == 3);
  CHECK(v.age_ms >= 0);
  CHECK(c.stats().refreshes >= 1);
}

TEST_CASE("commands go to their key's master: keys spread over all masters, scripts in one slot") {
  io_threads t;
  client c(t.io, options_from("SESSIOND_TEST_REDIS_CLUSTER_URL"));
  start_all(c);
  auto prefix = unique_prefix();
  constexpr int n = 3000;
  for (int i = 0; i < n; ++i)
    REQUIRE(call(c, {"SET", prefix + std::to_string(i), std::to_string(i)}).r.str == "OK");
  for (int i = 0; i < n; i += 7)
    REQUIRE(call(c, {"GET", prefix + std::to_string(i)}).r.str == std::to_string(i));
  CHECK(c.stats().moved == 0); // the topology was right: no redirects

  // Each master holds its share (SCAN per master, as a caller covering every key must).
  int total = 0;
  for (const auto& m : c.masters()) {
    int here = 0;
    std::string cursor = "0";
    do {
      auto r = call_at(c, m, {"SCAN", cursor, "MATCH", prefix + "*", "COUNT", "1000"}).r;
      REQUIRE(r.elements.size() == 2);
      cursor = r.elements[0].str;
      here += static_cast<int>(r.elements[1].elements.size());
    } while (cursor != "0");
    INFO(m << " holds " << here);
    CHECK(here >= n / 5);
    total += here;
  }
  CHECK(total == n);

  script both("redis.call('SET', KEYS[1], ARGV[1]); redis.call('SET', KEYS[2], ARGV[1]); "
              "return redis.call('GET', KEYS[2])");
  auto p = std::make_shared<std::promise<result>>();
  auto f = p->get_future();
  c.eval(0, both, {prefix + "{tag}a", prefix + "{tag}b"}, {"x"}, [p](errc e, reply&& r) {
    p->set_value({e, std::move(r)});
  });
  REQUIRE(f.wait_for(5s) == std::future_status::ready);
  CHECK(f.get().r.str == "x");
  // Keys in two slots: Redis Cluster refuses the script, and the caller hears why.
  auto p2 = std::make_shared<std::promise<result>>();
  auto f2 = p2->get_future();
  std::string a = prefix + "a", b = prefix + "b";
  REQUIRE(key_slot(a) != key_slot(b));
  c.eval(0, both, {a, b}, {"x"}, [p2](errc e, reply&& r) { p2->set_value({e, std::move(r)}); });
  REQUIRE(f2.wait_for(5s) == std::future_status::ready);
  auto crossed = f2.get();
  CHECK(crossed.r.is_error());
  CHECK_THAT(crossed.r.str, Catch::StartsWith("CROSSSLOT"));
}

TEST_CASE("a slot being migrated is followed with ASK, a moved slot with MOVED, nothing lost") {
  io_threads t;
  client c(t.io, options_from("SESSIOND_TEST_REDIS_CLUSTER_URL"));
  start_all(c);
  auto v = c.cluster();
  REQUIRE(v.shards.size() == 3);
  auto prefix = unique_prefix();
  const cluster_shard& from = v.shards[0];
  const cluster_shard& to = v.shards[1];
  auto old_key = key_on(v, from, prefix + "old:");
  auto slot = std::to_string(key_slot(old_key));
  std::string new_key;
  for (int i = 0; new_key.empty(); ++i)
    if (auto k = prefix + "new:" + std::to_string(i); key_slot(k) == key_slot(old_key))
      new_key = k;
  REQUIRE(call(c, {"SET", old_key, "before"}).r.str == "OK");

  // The steps of redis-cli --cluster reshard for one slot: IMPORTING, MIGRATING, then (the
  // returned step) MIGRATE every key of the slot (other tests' keys may share it), NODE.
  auto move_slot = [&](const cluster_shard& src, const cluster_shard& dst) {
    REQUIRE(cli(dst.master.address, "CLUSTER SETSLOT " + slot + " IMPORTING " + src.master.id) ==
            "OK");
    REQUIRE(cli(src.master.address, "CLUSTER SETSLOT " + slot + " MIGRATING " + dst.master.id) ==
            "OK");
    return [&] {
      auto colon = dst.master.address.rfind(':');
      for (;;) {
        auto keys = cli(src.master.address, "CLUSTER GETKEYSINSLOT " + slot + " 100");
        if (keys.empty())
          break;
        std::string list;
        for (std::size_t from = 0; from < keys.size();) {
          auto nl = keys.find('\n', from);
          list += " '" + keys.substr(from, nl == std::string::npos ? nl : nl - from) + "'";
          from = nl == std::string::npos ? keys.size() : nl + 1;
        }
        REQUIRE(cli(src.master.address, "MIGRATE " + dst.master.address.substr(0, colon) + " " +
                                            dst.master.address.substr(colon + 1) +
                                            " \"\" 0 5000 KEYS" + list) == "OK");
      }
      for (const auto& s : v.shards)
        CHECK(cli(s.master.address, "CLUSTER SETSLOT " + slot + " NODE " + dst.master.id) == "OK");
    };
  };

  auto finish = move_slot(from, to);
  // Mid-migration: a key the source lacks is asked for on the target (ASK, then ASKING).
  auto asked = c.stats().asked;
  REQUIRE(call(c, {"SET", new_key, "during"}).r.str == "OK");
  CHECK(c.stats().asked > asked);
  CHECK(call(c, {"GET", new_key}).r.str == "during");
  CHECK(call(c, {"GET", old_key}).r.str == "before"); // still on the source
  CHECK(cli(to.master.address, "CLUSTER COUNTKEYSINSLOT " + slot) == "1");
  finish();

  // The slot moved: the first command for it hears MOVED (or the topology was read already).
  CHECK(call(c, {"GET", old_key}).r.str == "before");
  CHECK(call(c, {"GET", new_key}).r.str == "during");
  CHECK(wait_until(
      [&] {
        auto view = c.cluster(); // owner() points into it
        const auto* s = owner(view, key_slot(old_key));
        return s != nullptr && s->master.address == to.master.address;
      },
      3s));

  // And back, so the cluster is as it was.
  auto back = move_slot(to, from);
  back();
  CHECK(call(c, {"GET", old_key}).r.str == "before");
  CHECK(wait_until(
      [&] {
        auto view = c.cluster(); // owner() points into it
        const auto* s = owner(view, key_slot(old_key));
        return s != nullptr && s->master.address == from.master.address;
      },
      3s));
  CHECK(c.stats().moved + c.stats().refreshes >= 2);
}

TEST_CASE("a failover is followed: the promoted replica serves its slots, other slots throughout") {
  io_threads t;
  auto o = options_from("SESSIOND_TEST_REDIS_CLUSTER_URL");
  o.command_timeout = 1000ms;
  client c(t.io, o);
  start_all(c);
  auto v = c.cluster();
  REQUIRE(v.shards.size() == 3);
  const auto& moving = v.shards[2];
  REQUIRE(moving.replicas.size() == 1);
  auto prefix = unique_prefix();
  auto here = key_on(v, moving, prefix + "moving:");
  auto other = key_on(v, v.shards[0], prefix + "other:");
  REQUIRE(call(c, {"SET", here, "1"}).r.str == "OK");
  REQUIRE(call(c, {"SET", other, "1"}).r.str == "OK");
  // Wait until the replica has the write, so the failover is clean.
  REQUIRE(call_at(c, moving.master.address, {"WAIT", "1", "2000"}).r.integer == 1);

  // The replica takes over (TAKEOVER: without the masters' votes, which Redis gives one
  // replica of a master only once per two node timeouts), the old master becomes its replica.
  // Until the old master hears of it, it still answers: writes it takes in that window are
  // lost when it resyncs as a replica (that is what redis.wait_replicas is for), so the
  // loop counts them and asserts only what holds: other slots are served throughout.
  const auto promoted = moving.replicas[0].address;
  REQUIRE(cli(promoted, "CLUSTER FAILOVER TAKEOVER") == "OK");
  int other_failed = 0, served = 0, tries = 0;
  auto switched = [&] {
    return cli(moving.master.address, "ROLE").rfind("slave", 0) == 0 &&
           cli(promoted, "ROLE").rfind("master", 0) == 0;
  };
  auto end = steady::now() + 15s;
  bool done = false;
  while (steady::now() < end && !done) {
    auto r = call(c, {"INCR", here});
    ++tries;
    served += r.e == errc::ok && r.r.type == reply::kind::integer ? 1 : 0;
    auto o2 = call(c, {"INCR", other});
    other_failed += o2.e == errc::ok && o2.r.type == reply::kind::integer ? 0 : 1;
    done = switched();
    std::this_thread::sleep_for(10ms);
  }
  REQUIRE(done);
  CHECK(other_failed == 0);
  INFO("INCRs of the failed-over slot during the switch: " << served << " of " << tries);

  // The client follows: the slot's writes reach the promoted replica and stay there.
  CHECK(wait_until(
      [&] {
        auto view = c.cluster(); // owner() points into it
        const auto* s = owner(view, key_slot(here));
        return s != nullptr && s->master.address == promoted;
      },
      10s));
  REQUIRE(wait_until([&] { return call(c, {"SET", here, "after"}).r.str == "OK"; }, 10s));
  CHECK(cli(promoted, "GET " + here) == "after");
  CHECK(call(c, {"GET", here}).r.str == "after");

  // Back again, so the cluster is as it was: once the old master has caught up.
  REQUIRE(wait_until(
      [&] {
        return cli(moving.master.address, "INFO replication").find("master_link_status:up") !=
               std::string::npos;
      },
      10s));
  REQUIRE(call_at(c, promoted, {"WAIT", "1", "2000"}).r.integer == 1);
  REQUIRE(cli(moving.master.address, "CLUSTER FAILOVER TAKEOVER") == "OK");
  REQUIRE(wait_until(
      [&] {
        return cli(promoted, "ROLE").rfind("slave", 0) == 0 &&
               cli(moving.master.address, "ROLE").rfind("master", 0) == 0;
      },
      15s));
  CHECK(wait_until(
      [&] {
        auto view = c.cluster(); // owner() points into it
        const auto* s = owner(view, key_slot(here));
        return s != nullptr && s->master.address == moving.master.address &&
               call(c, {"GET", here}).r.str == "after";
      },
      15s));
  // Leave the replica linked, so the next test (or run) starts from a healthy cluster.
  CHECK(wait_until(
      [&] {
        return cli(promoted, "INFO replication").find("master_link_status:up") != std::string::npos;
      },
      10s));
}
