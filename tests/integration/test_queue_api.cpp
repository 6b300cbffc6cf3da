// The job queue's HTTP API against the real Redis: every route and status of the contract,
// fencing by lease token, dedup, pause, priority, backpressure, long polls and bad input.
#include "queue_support.hpp"

#include <future>
#include <thread>

using namespace sessiond;
using test::body_of;
using test::client;
using test::json;
using test::post_empty;
using test::post_json;

namespace {

config::config queue_config() {
  auto c = test::test_config();
  c.http.max_body_bytes = 1 << 20;
  return c;
}

} // namespace

TEST_CASE("enqueue answers 201 with the id and state, and the job reads back") {
  test::queue_node n(queue_config());
  client c(n.port);
  auto r = post_json(c, "/v1/queues/mail/jobs",
                     {{"type", "send"}, {"payload", {{"to", "a@b"}}}, {"priority", 3}});
  REQUIRE(r.status == 201);
  auto b = body_of(r);
  CHECK(b["state"] == "waiting");
  CHECK(r.header("Location") == "/v1/queues/mail/jobs/" + b["id"].get<std::string>());
  auto j = test::job_of(c, "mail", b["id"]);
  CHECK(j["type"] == "send");
  CHECK(j["payload"]["to"] == "a@b");
  CHECK(j["priority"] == 3);
  CHECK(j["attempts"] == 0);
  CHECK(j["state"] == "waiting");
  CHECK(c.get("/v1/queues/mail/jobs/999999").status == 404);
  auto counts = test::counts_of(c, "mail");
  for (const char* k : {"waiting", "delayed", "active", "completed", "failed", "paused"})
    CHECK(counts.contains(k));
  CHECK(counts["waiting"] == 1);
}

TEST_CASE("lease, extend and complete follow the contract; a stale token gets 409") {
  test::queue_node n(queue_config());
  client c(n.port);
  auto id = test::enqueue(c, "mail", {{"type", "send"}, {"payload", {{"n", 1}}}});
  auto jobs = test::lease(c, "mail", {{"max", 10}, {"lease_ms", 5000}});
  REQUIRE(jobs.size() == 1);
  auto job = jobs[0];
  CHECK(job["id"] == id);
  CHECK(job["payload"]["n"] == 1);
  CHECK(job["attempt"] == 1);
  for (const char* k : {"id", "type", "payload", "attempt", "lease_token", "lease_expires_at"})
    CHECK(job.contains(k));
  std::string token = job["lease_token"];
  auto path = "/v1/queues/mail/jobs/" + id;
  auto ext = post_json(c, path + "/extend", {{"lease_token", token}, {"lease_ms", 20000}});
  CHECK(ext.status == 200);
  CHECK(body_of(ext)["lease_ms"] == 20000);
  auto stale = post_json(c, path + "/complete", {{"lease_token", "not-mine"}});
  CHECK(stale.status == 409);
  CHECK(stale.header("Content-Type") == "application/problem+json");
  CHECK(post_json(c, path + "/extend", {{"lease_token", "x"}, {"lease_ms", 2000}}).status == 409);
  auto done = post_json(c, path + "/complete", {{"lease_token", token}, {"result", {{"sent", 1}}}});
  CHECK(done.status == 204);
  CHECK(post_json(c, path + "/complete", {{"lease_token", token}}).status == 409);
  auto j = test::job_of(c, "mail", id);
  CHECK(j["state"] == "completed");
  CHECK(j["result"]["sent"] == 1);
  CHECK(post_json(c, "/v1/queues/mail/jobs/424242/complete", {{"lease_token", "t"}}).status == 404);
}

TEST_CASE("fail retries with backoff, fail without retry fails for good, retry re-runs it") {
  auto cfg = queue_config();
  auto& s = test::with_queue(cfg, "mail");
  s.backoff_ms = 1;
  s.max_backoff_ms = 1;
  test::queue_node n(cfg);
  client c(n.port);
  auto id = test::enqueue(c, "mail", {{"type", "send"}});
  auto path = "/v1/queues/mail/jobs/" + id;
  auto first = test::lease(c, "mail")[0];
  CHECK(post_json(c, path + "/fail", {{"lease_token", first["lease_token"]}, {"error", "smtp 451"}})
            .status == 204);
  json second;
  REQUIRE(test::eventually([&] {
    second = test::lease(c, "mail");
    return !second.empty();
  }));
  CHECK(second[0]["attempt"] == 2);
  CHECK(post_json(
            c, path + "/fail",
            {{"lease_token", second[0]["lease_token"]}, {"error", "bad address"}, {"retry", false}})
            .status == 204);
  auto j = test::job_of(c, "mail", id);
  CHECK(j["state"] == "failed");
  CHECK(j["error"] == "bad address");
  REQUIRE(j["history"].size() == 2);
  CHECK(j["history"][0]["error"] == "smtp 451");
  CHECK(j["history"][0]["outcome"] == "failed");
  CHECK(j["history"][1]["attempt"] == 2);
  CHECK(post_empty(c, path + "/retry").status == 204);
  CHECK(post_empty(c, path + "/retry").status == 409);
  auto third = test::lease(c, "mail");
  REQUIRE(third.size() == 1);
  CHECK(third[0]["attempt"] == 1);
  CHECK(c.del(path).status == 409); // active
  CHECK(post_json(c, path + "/complete", {{"lease_token", third[0]["lease_token"]}}).status == 204);
  CHECK(c.del(path).status == 204);
  CHECK(c.get(path).status == 404);
  CHECK(c.del(path).status == 404);
  CHECK(post_empty(c, path + "/retry").status == 404);
}

TEST_CASE("a dedup key answers 200 with the unfinished job holding it") {
  test::queue_node n(queue_config());
  client c(n.port);
  json job{{"type", "digest"}, {"payload", json::object()}, {"dedup_key", "user-7"}};
  auto first = post_json(c, "/v1/queues/mail/jobs", job);
  REQUIRE(first.status == 201);
  auto again = post_json(c, "/v1/queues/mail/jobs", job);
  CHECK(again.status == 200);
  CHECK(body_of(again)["id"] == body_of(first)["id"]);
  CHECK(test::counts_of(c, "mail")["waiting"] == 1);
  auto l = test::lease(c, "mail")[0];
  post_json(c, "/v1/queues/mail/jobs/" + l["id"].get<std::string>() + "/complete",
            {{"lease_token", l["lease_token"]}});
  CHECK(post_json(c, "/v1/queues/mail/jobs", job).status == 201); // released when it finished
}

TEST_CASE("a batch enqueues all or nothing, and jobs:complete reports completed and lost") {
  auto cfg = queue_config();
  test::with_queue(cfg, "bulk").max_length = 10;
  test::queue_node n(cfg);
  client c(n.port);
  json jobs = json::array();
  for (int i = 0; i < 8; ++i)
    jobs.push_back({{"type", "t"}, {"payload", {{"i", i}}}});
  auto r = post_json(c, "/v1/queues/bulk/jobs:batch", {{"jobs", jobs}});
  REQUIRE(r.status == 201);
  CHECK(body_of(r)["ids"].size() == 8);
  auto full = post_json(c, "/v1/queues/bulk/jobs:batch", {{"jobs", jobs}});
  CHECK(full.status == 429);
  CHECK(full.header("Retry-After") == "1");
  CHECK(test::counts_of(c, "bulk")["waiting"] == 8);
  auto leased = test::lease(c, "bulk", {{"max", 3}});
  REQUIRE(leased.size() == 3);
  json report = json::array();
  for (auto& j : leased)
    report.push_back({{"id", j["id"]}, {"lease_token", j["lease_token"]}});
  report.push_back({{"id", leased[0]["id"]}, {"lease_token", "stale"}});
  auto done = post_json(c, "/v1/queues/bulk/jobs:complete", {{"jobs", report}});
  REQUIRE(done.status == 200);
  CHECK(body_of(done)["completed"].size() == 3);
  CHECK(body_of(done)["lost"] == json::array({leased[0]["id"]}));
  CHECK(test::counts_of(c, "bulk")["completed"] == 3);
}

TEST_CASE("a queue at max_length answers 429 with Retry-After and stores nothing") {
  auto cfg = queue_config();
  test::with_queue(cfg, "small").max_length = 2;
  test::queue_node n(cfg);
  client c(n.port);
  test::enqueue(c, "small", {{"type", "t"}});
  test::enqueue(c, "small", {{"type", "t"}});
  auto r = post_json(c, "/v1/queues/small/jobs", {{"type", "t"}, {"payload", json::object()}});
  CHECK(r.status == 429);
  CHECK(r.header("Retry-After") == "1");
  CHECK(body_of(r)["type"] == "urn:sessiond:problem:queue-full");
  CHECK(test::counts_of(c, "small")["waiting"] == 2);
  auto metrics = c.get("/metrics").body;
  CHECK(metrics.find("sessiond_queue_rejected_total{queue=\"small\",reason=\"full\"} 1") !=
        std::string::npos);
}

TEST_CASE("higher priority is leased first, FIFO within a priority") {
  test::queue_node n(queue_config());
  client c(n.port);
  auto low = test::enqueue(c, "p", {{"type", "t"}});
  auto high = test::enqueue(c, "p", {{"type", "t"}, {"priority", 10}});
  auto low2 = test::enqueue(c, "p", {{"type", "t"}});
  auto jobs = test::lease(c, "p", {{"max", 3}});
  REQUIRE(jobs.size() == 3);
  CHECK(jobs[0]["id"] == high);
  CHECK(jobs[1]["id"] == low);
  CHECK(jobs[2]["id"] == low2);
}

TEST_CASE("a lease for some types leaves the other types waiting") {
  test::queue_node n(queue_config());
  client c(n.port);
  test::enqueue(c, "mixed", {{"type", "mail"}});
  auto sms = test::enqueue(c, "mixed", {{"type", "sms"}});
  auto jobs = test::lease(c, "mixed", {{"max", 5}, {"types", {"sms"}}});
  REQUIRE(jobs.size() == 1);
  CHECK(jobs[0]["id"] == sms);
  CHECK(test::counts_of(c, "mixed")["waiting_by_type"] == json{{"mail", 1}});
}

TEST_CASE("a paused queue leases nothing and counts its jobs as paused until resumed") {
  test::queue_node n(queue_config());
  client c(n.port);
  test::enqueue(c, "pq", {{"type", "t"}});
  CHECK(post_empty(c, "/v1/queues/pq/pause").status == 204);
  CHECK(test::lease(c, "pq").empty());
  auto counts = test::counts_of(c, "pq");
  CHECK(counts["paused"] == 1);
  CHECK(counts["waiting"] == 0);
  CHECK(counts["is_paused"] == true);
  CHECK(post_empty(c, "/v1/queues/pq/resume").status == 204);
  CHECK(test::lease(c, "pq").size() == 1);
}

TEST_CASE("a waiting lease returns as soon as a job is enqueued, not at the end of wait_ms") {
  test::queue_node n(queue_config());
  // No REQUIRE on the waiting thread: Catch2 2's assertion handler is not thread-safe
  // (ThreadSanitizer reports it against the main thread's assertions).
  auto waiter = std::async(std::launch::async, [&] {
    client c(n.port);
    auto start = std::chrono::steady_clock::now();
    auto r = test::post_json(c, "/v1/queues/lp/lease", {{"wait_ms", 20000}});
    return std::make_pair(r, std::chrono::steady_clock::now() - start);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  client c(n.port);
  auto id = test::enqueue(c, "lp", {{"type", "t"}});
  REQUIRE(waiter.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
  auto [r, took] = waiter.get();
  REQUIRE(r.status == 200);
  auto jobs = test::body_of(r)["jobs"];
  REQUIRE(jobs.size() == 1);
  CHECK(jobs[0]["id"] == id);
  CHECK(took < std::chrono::seconds(5));
}

TEST_CASE("a waiting lease on one node wakes for a job enqueued on another node") {
  auto cfg = queue_config();
  test::queue_node a(cfg);
  cfg.http.listen = "127.0.0.1:0";
  cfg.node.id = "second";
  test::queue_node b(cfg);
  auto waiter = std::async(std::launch::async, [&] { // no REQUIRE on this thread (above)
    client c(a.port);
    return test::post_json(c, "/v1/queues/x/lease", {{"wait_ms", 20000}});
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  client cb(b.port);
  auto id = test::enqueue(cb, "x", {{"type", "t"}});
  REQUIRE(waiter.wait_for(std::chrono::seconds(5)) == std::future_status::ready);
  auto r = waiter.get();
  REQUIRE(r.status == 200);
  auto jobs = test::body_of(r)["jobs"];
  REQUIRE(jobs.size() == 1);
  CHECK(jobs[0]["id"] == id);
}

TEST_CASE("a waiting lease with nothing to lease answers an empty list after wait_ms") {
  test::queue_node n(queue_config());
  client c(n.port);
  auto start = std::chrono::steady_clock::now();
  auto jobs = test::lease(c, "empty", {{"wait_ms", 400}});
  auto took = std::chrono::steady_clock::now() - start;
  CHECK(jobs.empty());
  CHECK(took >= std::chrono::milliseconds(400));
}

TEST_CASE("a delayed job waits for its due time, then a parked lease gets it") {
  test::queue_node n(queue_config());
  client c(n.port);
  auto r = post_json(c, "/v1/queues/later/jobs",
                     {{"type", "t"}, {"payload", json::object()}, {"delay_ms", 600}});
  REQUIRE(r.status == 201);
  CHECK(body_of(r)["state"] == "delayed");
  auto start = std::chrono::steady_clock::now();
  CHECK(test::lease(c, "later").empty());
  auto jobs = test::lease(c, "later", {{"wait_ms", 5000}});
  auto took = std::chrono::steady_clock::now() - start;
  REQUIRE(jobs.size() == 1);
  CHECK(took >= std::chrono::milliseconds(550));
  CHECK(took < std::chrono::milliseconds(1600));
}

TEST_CASE("delayed jobs reach a parked lease at their due time, not at the next maintenance") {
  auto cfg = queue_config();
  cfg.queues.maintenance_interval_ms = 5000; // only the planned promotion can be on time
  test::queue_node n(cfg);
  client c(n.port);
  for (int i = 0; i < 8; ++i) {
    auto delay = 200 + 60 * i;
    auto start = std::chrono::steady_clock::now();
    REQUIRE(post_json(c, "/v1/queues/due/jobs",
                      {{"type", "t"}, {"payload", json::object()}, {"delay_ms", delay}})
                .status == 201);
    auto jobs = test::lease(c, "due", {{"wait_ms", 5000}});
    auto took = std::chrono::steady_clock::now() - start;
    REQUIRE(jobs.size() == 1);
    CHECK(took >= std::chrono::milliseconds(delay));
    CHECK(took < std::chrono::milliseconds(delay + 500));
    post_json(c, "/v1/queues/due/jobs/" + jobs[0]["id"].get<std::string>() + "/complete",
              {{"lease_token", jobs[0]["lease_token"]}});
  }
}

TEST_CASE("an expired lease puts the job back; max_stalled expiries fail it for good") {
  auto cfg = queue_config();
  auto& s = test::with_queue(cfg, "poison");
  s.max_stalled = 2;
  s.max_attempts = 10;
  cfg.queues.maintenance_interval_ms = 50;
  test::queue_node n(cfg);
  client c(n.port);
  auto id = test::enqueue(c, "poison", {{"type", "t"}});
  auto first = test::lease(c, "poison", {{"lease_ms", 1000}});
  REQUIRE(first.size() == 1);
  // The worker that took it died: nobody answers. Within about a second of the expiry the job
  // is back, its attempt counted.
  json second;
  REQUIRE(test::eventually(
      [&] {
        second = test::lease(c, "poison", {{"lease_ms", 1000}});
        return !second.empty();
      },
      std::chrono::seconds(5)));
  CHECK(second[0]["attempt"] == 2);
  CHECK(post_json(c, "/v1/queues/poison/jobs/" + id + "/complete",
                  {{"lease_token", first[0]["lease_token"]}})
            .status == 409);
  REQUIRE(test::eventually([&] { return test::job_of(c, "poison", id)["state"] == "failed"; },
                           std::chrono::seconds(5)));
  auto j = test::job_of(c, "poison", id);
  CHECK(j["stalls"] == 2);
  CHECK(j["history"].size() == 2);
  CHECK(j["history"][1]["outcome"] == "stalled");
  CHECK(c.get("/metrics").body.find("sessiond_queue_stalled_total{queue=\"poison\"} 2") !=
        std::string::npos);
}

TEST_CASE("GET /v1/queues lists every queue with its counts") {
  test::queue_node n(queue_config());
  client c(n.port);
  test::enqueue(c, "q1", {{"type", "t"}});
  test::enqueue(c, "q2", {{"type", "t"}});
  auto r = c.get("/v1/queues");
  REQUIRE(r.status == 200);
  auto list = body_of(r)["queues"];
  REQUIRE(list.size() == 2);
  CHECK(list[0]["name"] == "q1");
  CHECK(list[1]["waiting"] == 1);
}

TEST_CASE("bad input gets a 4xx problem and changes nothing") {
  auto cfg = queue_config();
  cfg.http.max_body_bytes = 4096;
  cfg.queues.max_payload_bytes = 100;
  test::queue_node n(cfg);
  client c(n.port);
  auto status = [&](const std::string& path, const std::string& body) {
    auto r = c.call(boost::beast::http::verb::post, path, body);
    if (r.status >= 400)
      CHECK(r.header("Content-Type") == "application/problem+json");
    return r.status;
  };
  const std::string jobs = "/v1/queues/bad/jobs";
  CHECK(status(jobs, "{not json") == 400);
  CHECK(status(jobs, R"({"type":"t","payload":[1]})") == 400);
  CHECK(status(jobs, R"({"type":"t"})") == 400);
  CHECK(status(jobs, R"({"type":"t/x","payload":{}})") == 400);
  CHECK(status(jobs, R"({"type":"t","payload":{},"priority":"high"})") == 400);
  CHECK(status(jobs, R"({"type":"t","payload":{},"delay_ms":-1})") == 400);
  CHECK(status(jobs, R"({"type":"t","payload":{},"lease_ms":10})") == 400);
  CHECK(status(jobs, R"({"type":"t","payload":{},"extra":1})") == 400);
  CHECK(status(jobs, R"({"type":"t","payload":{"big":")" + std::string(200, 'x') + "\"}}") == 413);
  {
    client other(n.port); // the server closes a connection after a body over the limit
    CHECK(other.call(boost::beast::http::verb::post, jobs, std::string(5000, ' ')).status == 413);
  }
  CHECK(status("/v1/queues/bad%20name/jobs", R"({"type":"t","payload":{}})") == 400);
  CHECK(status("/v1/queues/" + std::string(65, 'q') + "/jobs", R"({"type":"t","payload":{}})") ==
        400);
  CHECK(status("/v1/queues/bad/jobs:batch", json{{"jobs", json::array()}}.dump()) == 400);
  CHECK(status("/v1/queues/bad/lease", R"({"max":0})") == 400);
  CHECK(status("/v1/queues/bad/lease", R"({"max":1001})") == 400);
  CHECK(status("/v1/queues/bad/lease", R"({"wait_ms":30001})") == 400);
  CHECK(status("/v1/queues/bad/jobs/abc/complete", R"({"lease_token":"t"})") == 400);
  CHECK(status("/v1/queues/bad/jobs/1/complete", R"({})") == 400);
  CHECK(status("/v1/queues/bad/jobs/1/fail", R"({"lease_token":"t"})") == 400);
  CHECK(status("/v1/queues/bad/jobs/1/extend", R"({"lease_token":"t"})") == 400);
  CHECK(status("/v1/queues/bad/nope", "{}") == 404);
  CHECK(c.call(boost::beast::http::verb::put, jobs, "{}").status == 405);
  CHECK(c.call(boost::beast::http::verb::post, jobs, R"({"type":"t","payload":{}})",
               {{"Content-Type", "text/plain"}})
            .status == 415);
  CHECK(c.get("/v1/queues/bad").status == 200);
  CHECK(test::counts_of(c, "bad")["waiting"] == 0);
}

TEST_CASE("a batch over 1,000 jobs is refused whole") {
  auto cfg = queue_config();
  cfg.http.max_body_bytes = 1 << 20;
  test::queue_node n(cfg);
  client c(n.port);
  json batch = json::array();
  for (int i = 0; i < 1001; ++i)
    batch.push_back({{"type", "t"}, {"payload", json::object()}});
  auto r = post_json(c, "/v1/queues/big/jobs:batch", {{"jobs", batch}});
  CHECK(r.status == 413);
  CHECK(test::counts_of(c, "big")["waiting"] == 0);
}

TEST_CASE("the status JSON and /metrics show each queue") {
  test::queue_node n(queue_config());
  client c(n.port);
  test::enqueue(c, "shown", {{"type", "t"}});
  REQUIRE(test::eventually([&] {
    auto s = body_of(c.get("/v1/status"));
    for (auto& q : s["queues"]["list"])
      if (q["name"] == "shown" && q["waiting"] == 1)
        return true;
    return false;
  }));
  auto m = c.get("/metrics").body;
  CHECK(m.find("sessiond_queue_jobs{queue=\"shown\",state=\"waiting\"} 1") != std::string::npos);
  CHECK(m.find("sessiond_queue_enqueued_total{queue=\"shown\"} 1") != std::string::npos);
}
