// The job queue's built-in workers and clocks against the real Redis: the noop pool, webhooks and
// their circuit, the shutdown drain, retry backoff on an injected clock, recurring jobs with two
// nodes, and the Redis memory guards (maxmemory-policy, memory ratio).
#include "queue_support.hpp"

#include <thread>

using namespace sessiond;
using test::body_of;
using test::client;
using test::json;
using test::post_json;

namespace {

/// Polls `q` until it has no unfinished job.
bool drained(client& c, const std::string& q, std::chrono::milliseconds limit) {
  return test::eventually(
      [&] {
        auto n = test::counts_of(c, q);
        return n["waiting"] == 0 && n["active"] == 0 && n["delayed"] == 0;
      },
      limit);
}

json batch_of(const std::string& type, int n) {
  json jobs = json::array();
  for (int i = 0; i < n; ++i)
    jobs.push_back({{"type", type}, {"payload", {{"i", i}}}});
  return {{"jobs", jobs}};
}

} // namespace

TEST_CASE("the built-in noop pool completes every job enqueued") {
  auto cfg = test::test_config();
  auto& s = test::with_queue(cfg, "work", "noop", "noop");
  s.concurrency = 16;
  s.keep_completed = 100000;
  test::queue_node n(cfg);
  client c(n.port);
  for (int i = 0; i < 5; ++i)
    REQUIRE(post_json(c, "/v1/queues/work/jobs:batch", batch_of("noop", 200)).status == 201);
  REQUIRE(drained(c, "work", std::chrono::seconds(20)));
  CHECK(test::counts_of(c, "work")["completed"] == 1000);
  CHECK(c.get("/metrics").body.find("sessiond_queue_completed_total{queue=\"work\"} 1000") !=
        std::string::npos);
}

TEST_CASE("a job type without a built-in handler waits for an external worker") {
  auto cfg = test::test_config();
  test::with_queue(cfg, "mixed", "fast", "noop").concurrency = 4;
  test::queue_node n(cfg);
  client c(n.port);
  auto pulled = test::enqueue(c, "mixed", {{"type", "send_notifications"}});
  test::enqueue(c, "mixed", {{"type", "fast"}});
  REQUIRE(test::eventually([&] { return test::counts_of(c, "mixed")["completed"] == 1; }));
  CHECK(test::job_of(c, "mixed", pulled)["state"] == "waiting");
  auto jobs = test::lease(c, "mixed");
  REQUIRE(jobs.size() == 1);
  CHECK(jobs[0]["id"] == pulled);
}

TEST_CASE("a webhook gets the job as JSON with an Idempotency-Key; 2xx completes with the body") {
  test::webhook_receiver hook;
  auto cfg = test::test_config();
  test::with_queue(cfg, "hooks", "notify", "webhook", hook.url()).concurrency = 2;
  test::queue_node n(cfg);
  client c(n.port);
  auto id = test::enqueue(c, "hooks", {{"type", "notify"}, {"payload", {{"user", "u1"}}}});
  REQUIRE(test::eventually([&] { return test::job_of(c, "hooks", id)["state"] == "completed"; }));
  auto calls = hook.bodies();
  REQUIRE(calls.size() == 1);
  CHECK(calls[0]["id"] == id);
  CHECK(calls[0]["type"] == "notify");
  CHECK(calls[0]["payload"]["user"] == "u1");
  CHECK(calls[0]["attempt"] == 1);
  CHECK(test::job_of(c, "hooks", id)["result"]["ok"] == true);
}

TEST_CASE("a webhook's 4xx fails the job at once; its 5xx is retried") {
  test::webhook_receiver hook;
  auto cfg = test::test_config();
  auto& s = test::with_queue(cfg, "hooks", "notify", "webhook", hook.url());
  s.concurrency = 1;
  s.backoff_ms = 1;
  s.max_backoff_ms = 1;
  s.max_attempts = 3;
  s.circuit_failures = 100;
  test::queue_node n(cfg);
  client c(n.port);
  hook.answer(422);
  auto bad = test::enqueue(c, "hooks", {{"type", "notify"}});
  REQUIRE(test::eventually([&] { return test::job_of(c, "hooks", bad)["state"] == "failed"; }));
  CHECK(hook.calls() == 1);
  auto j = test::job_of(c, "hooks", bad);
  CHECK(j["error"].get<std::string>().find("HTTP 422") != std::string::npos);
  hook.answer(503);
  auto flaky = test::enqueue(c, "hooks", {{"type", "notify"}});
  REQUIRE(test::eventually([&] { return test::job_of(c, "hooks", flaky)["state"] == "failed"; }));
  CHECK(hook.calls() == 1 + 3); // every attempt of max_attempts
  CHECK(test::job_of(c, "hooks", flaky)["history"].size() == 3);
}

TEST_CASE("a failing webhook opens the circuit: calls stop, jobs wait, and complete after it "
          "recovers") {
  test::webhook_receiver hook;
  hook.answer(500);
  auto cfg = test::test_config();
  auto& s = test::with_queue(cfg, "hooks", "notify", "webhook", hook.url());
  s.concurrency = 4;
  s.backoff_ms = 1;
  s.max_backoff_ms = 1;
  s.max_attempts = 1000;
  s.circuit_failures = 3;
  s.circuit_cooldown_ms = 700;
  test::queue_node n(cfg);
  client c(n.port);
  REQUIRE(post_json(c, "/v1/queues/hooks/jobs:batch", batch_of("notify", 20)).status == 201);
  std::this_thread::sleep_for(std::chrono::seconds(3));
  // Without the circuit 4 workers would have called ~thousands of times in 3 s (backoff 1 ms).
  // With it: the failures that open it (up to the 4 in flight), then one probe per cooldown.
  int while_down = hook.calls();
  CHECK(while_down >= 3);
  CHECK(while_down <= 4 + 3 * 2 + 2);
  CHECK(c.get("/metrics")
            .body.find("sessiond_queue_circuit_open{queue=\"hooks\",type=\"notify\"} 1") !=
        std::string::npos);
  auto status = body_of(c.get("/v1/status"));
  bool shown_open = false;
  for (auto& q : status["queues"]["list"])
    if (q["name"] == "hooks")
      shown_open = q["workers"]["circuits"]["notify"] != "closed";
  CHECK(shown_open);
  hook.answer(200);
  REQUIRE(drained(c, "hooks", std::chrono::seconds(10)));
  CHECK(test::counts_of(c, "hooks")["completed"] == 20);
  CHECK(test::counts_of(c, "hooks")["failed"] == 0);
}

TEST_CASE("on stop, running jobs finish within the grace and waiting jobs stay, attempts unspent") {
  test::webhook_receiver hook;
  hook.delay(400);
  auto cfg = test::test_config();
  auto& s = test::with_queue(cfg, "slow", "work", "webhook", hook.url());
  s.concurrency = 1;
  cfg.queues.shutdown_grace_ms = 3000;
  std::string first, second;
  {
    test::queue_node n(cfg);
    client c(n.port);
    first = test::enqueue(c, "slow", {{"type", "work"}});
    second = test::enqueue(c, "slow", {{"type", "work"}});
    REQUIRE(test::eventually([&] { return hook.calls() == 1; }));
    n.node.stop();
  }
  test::redis_probe probe(cfg.redis.url);
  auto state = [&](const std::string& id) {
    return probe.command({"HGET", cfg.redis.key_prefix + "{q:slow}:j:" + id, "st"}).str;
  };
  CHECK(state(first) == "c");
  CHECK(state(second) == "w");
}

TEST_CASE(
    "on stop past the grace, running jobs go back to waiting with their attempt not counted") {
  test::webhook_receiver hook;
  hook.delay(1500);
  auto cfg = test::test_config();
  test::with_queue(cfg, "slow", "work", "webhook", hook.url()).concurrency = 1;
  cfg.queues.shutdown_grace_ms = 100;
  std::string id;
  {
    test::queue_node n(cfg);
    client c(n.port);
    id = test::enqueue(c, "slow", {{"type", "work"}});
    REQUIRE(test::eventually([&] { return hook.calls() == 1; }));
    n.node.stop();
  }
  test::redis_probe probe(cfg.redis.url);
  auto key = cfg.redis.key_prefix + "{q:slow}:j:" + id;
  CHECK(probe.command({"HGET", key, "st"}).str == "w");
  CHECK(probe.command({"HGET", key, "a"}).str == "0");
}

TEST_CASE("a retry waits its full-jitter backoff on the node's clock") {
  test::shared_clock clock(1'800'000'000'000);
  auto cfg = test::test_config();
  auto& s = test::with_queue(cfg, "later");
  s.backoff_ms = 60000;
  s.max_backoff_ms = 600000;
  test::queue_node n(cfg, clock);
  client c(n.port);
  auto id = test::enqueue(c, "later", {{"type", "t"}});
  auto l = test::lease(c, "later")[0];
  auto failed_at = clock.now_ms();
  REQUIRE(post_json(c, "/v1/queues/later/jobs/" + id + "/fail",
                    {{"lease_token", l["lease_token"]}, {"error", "try later"}})
              .status == 204);
  auto j = test::job_of(c, "later", id);
  REQUIRE(j["state"] == "delayed");
  // full jitter after attempt 1: uniform in [0, 60 s]
  auto history = j["history"];
  REQUIRE(history.size() == 1);
  auto due = model::rfc3339_ms(failed_at);
  CHECK(j["due_at"].get<std::string>() >= due);
  CHECK(j["due_at"].get<std::string>() <= model::rfc3339_ms(failed_at + 60000));
  clock.advance_ms(60001);
  auto again = test::lease(c, "later");
  REQUIRE(again.size() == 1);
  CHECK(again[0]["attempt"] == 2);
  // after attempt 2 the cap doubles: 120 s
  post_json(c, "/v1/queues/later/jobs/" + id + "/fail",
            {{"lease_token", again[0]["lease_token"]}, {"error", "again"}});
  auto j2 = test::job_of(c, "later", id);
  if (j2["state"] == "delayed") {
    CHECK(j2["due_at"].get<std::string>() <= model::rfc3339_ms(clock.now_ms() + 120000));
    clock.advance_ms(120001);
  }
  auto third = test::lease(c, "later");
  REQUIRE(third.size() == 1);
  CHECK(third[0]["attempt"] == 3);
}

TEST_CASE("a recurring job is enqueued once per period with two nodes running") {
  test::shared_clock clock(1'800'000'000'000 - 1'800'000'000'000 % 60000 + 1000);
  auto cfg = test::test_config();
  config::queue_schedule sch;
  sch.name = "tickets";
  sch.queue = "maint";
  sch.type = "close_inactive_tickets";
  sch.payload = R"({"days":30})";
  sch.every_s = 60;
  cfg.queues.schedule.push_back(sch);
  test::queue_node a(cfg, clock);
  cfg.node.id = "second-node";
  test::queue_node b(cfg, clock);
  client c(a.port);
  auto waiting = [&] { return test::counts_of(c, "maint")["waiting"].get<int>(); };
  REQUIRE(test::eventually([&] { return waiting() == 1; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(1500)); // both nodes looked again
  CHECK(waiting() == 1);
  clock.advance_ms(59000); // the next minute begins
  REQUIRE(test::eventually([&] { return waiting() == 2; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  CHECK(waiting() == 2);
  auto jobs = test::lease(c, "maint", {{"max", 10}});
  REQUIRE(jobs.size() == 2);
  CHECK(jobs[0]["payload"]["days"] == 30);
  CHECK(jobs[0]["type"] == "close_inactive_tickets");
}

TEST_CASE("a queue Redis that may evict keys is refused with require_noeviction, else flagged") {
  test::private_redis redis({"--maxmemory-policy", "allkeys-lru"});
  auto cfg = test::test_config(redis.url());
  cfg.queues.require_noeviction = true;
  {
    app::node n(cfg);
    try {
      n.start();
      FAIL("the node started next to an evicting Redis");
    } catch (const std::runtime_error& e) {
      CHECK(std::string(e.what()).find("maxmemory-policy allkeys-lru") != std::string::npos);
    }
  }
  cfg.queues.require_noeviction = false;
  test::queue_node n(cfg);
  client c(n.port);
  auto ready = body_of(c.get("/readyz"));
  CHECK(ready["details"]["queues"].get<std::string>().find("allkeys-lru") != std::string::npos);
  CHECK(c.get("/metrics").body.find("sessiond_queue_redis_eviction_unsafe 1") != std::string::npos);
}

TEST_CASE("above queues.max_redis_memory_ratio an enqueue answers 503 with Retry-After") {
  test::private_redis redis({"--maxmemory", "64mb"});
  auto cfg = test::test_config(redis.url());
  cfg.queues.max_redis_memory_ratio = 0.001; // an empty Redis uses ~1 MB of 64
  test::queue_node n(cfg);
  client c(n.port);
  REQUIRE(test::eventually([&] {
    return post_json(c, "/v1/queues/m/jobs", {{"type", "t"}, {"payload", json::object()}}).status ==
           503;
  }));
  auto r = post_json(c, "/v1/queues/m/jobs", {{"type", "t"}, {"payload", json::object()}});
  CHECK(r.header("Retry-After") == "1");
  CHECK(body_of(r)["type"] == "urn:sessiond:problem:redis-memory");
  CHECK(
      c.get("/metrics").body.find("sessiond_queue_rejected_total{queue=\"m\",reason=\"memory\"}") !=
      std::string::npos);
}
