// Node resilience against the real Redis: a crashed shard is restarted and serves its keys again;
// Redis stopping turns requests into quick 503s and /readyz into 503; Redis coming back restores
// service without restarting the node; Redis at maxmemory refuses writes with a clear 503;
// backpressure answers 503 at once.
#include "messages/session.hpp"
#include "model/shard_for.hpp"
#include "support.hpp"

#include <caf/actor_system.hpp>
#include <caf/exit_reason.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>
#include <nlohmann/json.hpp>

#include <atomic>
#include <thread>

using namespace sessiond;
using test::client;
using json = nlohmann::json;

namespace {

messages::shard_actor shard_of(app::node& n, std::uint64_t i) {
  caf::scoped_actor self{n.system()};
  messages::shard_actor out;
  self->request(n.router(), std::chrono::seconds(5), messages::get_shard_atom::value, i)
      .receive([&](messages::shard_actor s) { out = s; }, [&](caf::error&) {});
  return out;
}

} // namespace

TEST_CASE("a shard killed mid-load is restarted and serves its keys again") {
  auto cfg = test::test_config();
  cfg.sessions.shards = 2;
  app::node n(cfg);
  auto port = n.start();
  REQUIRE(test::eventually([&] { return n.stats().redis_up; }));
  REQUIRE(client(port).put("/v1/sessions/k0", R"({"user_id":"u","data":{"a":1}})").status == 201);
  auto owner = model::shard_for("k0", 2);
  auto before = shard_of(n, owner);
  REQUIRE(before);
  // PATCH is the operation the shard actor runs (GET, PUT and DELETE go out without it).
  std::atomic<bool> stop{false};
  std::atomic<int> ok{0}, unavailable{0}, other{0};
  std::thread load([&] {
    client c(port);
    while (!stop) {
      auto s = c.patch("/v1/sessions/k0", R"({"b":2})").status;
      (s == 200 ? ok : s == 503 ? unavailable : other)++;
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  caf::anon_send_exit(before, caf::exit_reason::kill);
  REQUIRE(test::eventually([&] {
    auto now = shard_of(n, owner);
    return now && now != before;
  }));
  int ok_before = ok;
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  stop = true;
  load.join();
  CHECK(ok > ok_before);
  CHECK(other == 0);
  CHECK(n.stats().shard_restarts == 1);
  auto r = client(port).get("/v1/sessions/k0");
  CHECK(r.status == 200);
  CHECK(json::parse(r.body)["data"]["a"] == 1);
}

TEST_CASE("Redis down: 503 within the timeout and readyz 503; Redis back: serving again") {
  test::private_redis redis;
  auto cfg = test::test_config(redis.url());
  cfg.redis.command_timeout_ms = 300;
  cfg.redis.reconnect_max_ms = 300;
  app::node n(cfg);
  auto port = n.start();
  REQUIRE(test::eventually([&] { return n.stats().redis_up; }));
  REQUIRE(client(port).put("/v1/sessions/d1", R"({"user_id":"u","data":{}})").status == 201);

  redis.stop();
  client c(port);
  auto t0 = std::chrono::steady_clock::now();
  auto r = c.get("/v1/sessions/d1");
  auto took = std::chrono::steady_clock::now() - t0;
  CHECK(r.status == 503);
  CHECK_FALSE(r.header("Retry-After").empty());
  CHECK(took < std::chrono::milliseconds(1000));
  CHECK(test::eventually([&] { return c.get("/readyz").status == 503; }));
  auto ready = json::parse(c.get("/readyz").body);
  CHECK(ready["checks"]["redis"] == "down");
  CHECK(c.put("/v1/sessions/d2", R"({"user_id":"u","data":{}})").status == 503);

  redis.start(); // empty: no persistence in the private instance
  CHECK(test::eventually([&] { return c.get("/readyz").status == 200; }));
  CHECK(c.put("/v1/sessions/d3", R"({"user_id":"u","data":{}})").status == 201);
  CHECK(c.get("/v1/sessions/d3").status == 200);
}

TEST_CASE("Redis at maxmemory: writes answer 503 saying so and change nothing, a user-wide "
          "DELETE too, reads still work; writes work again once Redis has memory") {
  test::private_redis redis;
  test::redis_probe probe(redis.url());
  auto cfg = test::test_config(redis.url());
  app::node n(cfg);
  auto port = n.start();
  REQUIRE(test::eventually([&] { return n.stats().redis_up; }));
  client c(port);
  REQUIRE(c.put("/v1/sessions/m1", R"({"user_id":"u","data":{"a":1}})").status == 201);

  REQUIRE(probe.command({"CONFIG", "SET", "maxmemory", "1"}).str == "OK"); // noeviction
  auto put = c.put("/v1/sessions/m1", R"({"user_id":"u","data":{"a":2}})");
  CHECK(put.status == 503);
  CHECK(put.header("Retry-After") == "1");
  auto problem = json::parse(put.body);
  CHECK(problem["type"] == "urn:sessiond:problem:unavailable");
  CHECK(problem["detail"] == "Redis is out of memory (maxmemory reached) and refuses writes until "
                             "memory is freed: nothing was changed; reads still work");
  CHECK(c.put("/v1/sessions/m2", R"({"user_id":"u","data":{}})").status == 503);
  CHECK(c.patch("/v1/sessions/m1", R"({"b":1})").status == 503);
  CHECK(c.del("/v1/sessions/m1").status == 503);
  // Log out everywhere must not answer 200 while the user's session stays live.
  auto all = c.del("/v1/users/u/sessions");
  CHECK(all.status == 503);
  CHECK_FALSE(all.header("Retry-After").empty());
  CHECK(json::parse(all.body)["detail"].get<std::string>().rfind(
            "1 of the user's sessions were not confirmed revoked and may still be live (0 were "
            "revoked); retry the DELETE. First failure: Redis is out of memory",
            0) == 0);
  auto get = c.get("/v1/sessions/m1");
  CHECK(get.status == 200);
  CHECK(get.header("ETag") == "\"1\"");
  CHECK(json::parse(get.body)["data"] == json::parse(R"({"a":1})"));
  CHECK(c.get("/v1/sessions/m2").status == 404);
  CHECK(c.get("/readyz").status == 200); // every node shares this Redis: none is better off

  REQUIRE(probe.command({"CONFIG", "SET", "maxmemory", "0"}).str == "OK");
  auto again = c.put("/v1/sessions/m1", R"({"user_id":"u","data":{"a":2}})");
  CHECK(again.status == 200);
  CHECK(again.header("ETag") == "\"2\"");
  auto retried = c.del("/v1/users/u/sessions");
  CHECK(retried.status == 200);
  CHECK(json::parse(retried.body)["revoked"] == 1);
  CHECK(c.get("/v1/sessions/m1").status == 404);
}

TEST_CASE("past max_in_flight a shard's requests answer 503 with Retry-After at once") {
  test::private_redis redis;
  auto cfg = test::test_config(redis.url());
  cfg.sessions.shards = 1;
  cfg.sessions.max_in_flight = 4;
  cfg.redis.command_timeout_ms = 3000;
  app::node n(cfg);
  auto port = n.start();
  REQUIRE(test::eventually([&] { return n.stats().redis_up; }));
  // Hold Redis so that requests stay in flight.
  redis.pause_clients(1500);
  std::vector<std::thread> slow;
  std::atomic<int> answered{0};
  for (int i = 0; i < 4; ++i)
    slow.emplace_back([&, i] {
      client c(port);
      if (c.get("/v1/sessions/x" + std::to_string(i)).status == 404)
        answered++;
    });
  REQUIRE(test::eventually([&] { return n.stats().backpressure_rejections == 0; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  client c(port);
  auto t0 = std::chrono::steady_clock::now();
  auto r = c.get("/v1/sessions/y");
  CHECK(r.status == 503);
  CHECK(r.header("Retry-After") == "1");
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::milliseconds(200));
  CHECK(n.stats().backpressure_rejections >= 1);
  for (auto& t : slow)
    t.join();
  CHECK(answered == 4);
}
