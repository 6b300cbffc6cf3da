// Unit tests of the queue actors' pure parts: what a webhook's answer means for its job, the
// INFO memory reading behind the enqueue backpressure, daily schedule times, route labels.
#include "actors/queue/queue_keeper.hpp"
#include "actors/queue/queue_worker.hpp"
#include "api/metrics.hpp"

#include <catch2/catch.hpp>

using namespace sessiond;

namespace {

messages::run_job job() {
  messages::run_job j;
  j.queue = "mail";
  j.job.id = "7";
  j.job.token = "tok";
  return j;
}

messages::job_done answer(unsigned status, std::string body = "", std::string error = "") {
  messages::webhook_done w;
  w.id = "7";
  w.status = status;
  w.body = std::move(body);
  w.error = std::move(error);
  return actors::webhook_outcome(job(), w, 100);
}

} // namespace

TEST_CASE("a webhook's 2xx completes its job, with a JSON body as the result") {
  auto ok = answer(200, R"({ "sent" : true })");
  CHECK(ok.kind == 'c');
  CHECK(ok.value == R"({"sent":true})");
  CHECK(ok.token == "tok");
  CHECK_FALSE(ok.downstream_failed);
  CHECK(answer(204).value.empty());
  CHECK(answer(200, "plain text").value.empty());          // not JSON: no result
  CHECK(answer(200, std::string(200, '1')).value.empty()); // over the limit: no result
}

TEST_CASE("a webhook's 5xx, 408, 429 and transport failures retry and count against the circuit") {
  for (unsigned s : {500u, 502u, 503u, 408u, 429u}) {
    auto d = answer(s, "busy");
    CHECK(d.kind == 'f');
    CHECK(d.downstream_failed);
    CHECK(d.value == "webhook answered HTTP " + std::to_string(s) + ": busy");
  }
  auto down = answer(0, "", "connect to 127.0.0.1:9: Connection refused");
  CHECK(down.kind == 'f');
  CHECK(down.downstream_failed);
  CHECK(down.value == "webhook call failed: connect to 127.0.0.1:9: Connection refused");
}

TEST_CASE("a webhook's other 4xx fails its job for good without touching the circuit") {
  auto d = answer(422, "bad\naddress");
  CHECK(d.kind == 'F');
  CHECK_FALSE(d.downstream_failed);
  CHECK(d.value == "webhook answered HTTP 422 (not retried): bad address");
}

TEST_CASE("INFO memory gives used_memory, maxmemory and the policy") {
  auto m = actors::parse_memory("# Memory\r\nused_memory:1048576\r\nused_memory_human:1.00M\r\n"
                                "maxmemory:67108864\r\nmaxmemory_policy:allkeys-lru\r\n");
  CHECK(m.known);
  CHECK(m.used == 1048576);
  CHECK(m.max == 67108864);
  CHECK(m.policy == "allkeys-lru");
  CHECK_FALSE(actors::parse_memory("# Memory\r\n").known);
}

TEST_CASE("a daily schedule's HH:MM is minutes after midnight") {
  CHECK(actors::minute_of_day("00:00") == 0);
  CHECK(actors::minute_of_day("03:30") == 210);
  CHECK(actors::minute_of_day("23:59") == 1439);
}

TEST_CASE("queue paths are labelled by their route template, never by name or id") {
  using api::route_id;
  CHECK(api::classify("/v1/queues") == route_id::queues);
  CHECK(api::classify("/v1/queues/mail") == route_id::queue);
  CHECK(api::classify("/v1/queues/mail/jobs") == route_id::queue_jobs);
  CHECK(api::classify("/v1/queues/a:b/jobs:batch") == route_id::queue_jobs_batch);
  CHECK(api::classify("/v1/queues/mail/jobs:complete") == route_id::queue_jobs_complete);
  CHECK(api::classify("/v1/queues/mail/lease?x=1") == route_id::queue_lease);
  CHECK(api::classify("/v1/queues/mail/resume") == route_id::queue_pause);
  CHECK(api::classify("/v1/queues/mail/jobs/12") == route_id::queue_job);
  CHECK(api::classify("/v1/queues/mail/jobs/12/extend") == route_id::queue_job_action);
  CHECK(api::classify("/v1/queuesx") == route_id::other);
  CHECK(std::string(api::to_string(route_id::queue_job_action)) ==
        "/v1/queues/{q}/jobs/{id}/{action}");
}
