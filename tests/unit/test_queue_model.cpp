// Unit tests of the job queue's pure rules (model/queue): names, request bodies, retry backoff,
// the handler circuit and the periods of recurring jobs.
#include "model/queue.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

using namespace sessiond::model;

namespace {

std::string detail_of(const std::optional<input_error>& e) {
  return e ? std::to_string(e->status) + " " + e->detail : "ok";
}

std::string job_error(const std::string& body, queue_limits lim = {}) {
  job_spec j;
  return detail_of(parse_job_spec(body, lim, j));
}

} // namespace

TEST_CASE("queue names, job types and dedup keys match [A-Za-z0-9._:-]{1,64}") {
  CHECK(valid_queue_name("mail"));
  CHECK(valid_queue_name("tenant-7:mail.v2_x"));
  CHECK(valid_queue_name(std::string(64, 'q')));
  CHECK_FALSE(valid_queue_name(""));
  CHECK_FALSE(valid_queue_name(std::string(65, 'q')));
  CHECK_FALSE(valid_queue_name("a/b"));
  CHECK_FALSE(valid_queue_name("a b"));
  CHECK_FALSE(valid_queue_name("{q}"));
}

TEST_CASE("job ids are decimal numbers without a leading zero") {
  CHECK(valid_job_id("1"));
  CHECK(valid_job_id("18446744073709551615"));
  CHECK_FALSE(valid_job_id(""));
  CHECK_FALSE(valid_job_id("0"));
  CHECK_FALSE(valid_job_id("01"));
  CHECK_FALSE(valid_job_id("1a"));
  CHECK_FALSE(valid_job_id("123456789012345678901"));
}

TEST_CASE("a job body is parsed with its optional members and a compact payload") {
  job_spec j;
  auto err = parse_job_spec(R"({"type":"send","payload":{ "to" : "a@b" },"delay_ms":5,
    "priority":-3,"max_attempts":7,"dedup_key":"k","lease_ms":2000})",
                            {}, j);
  REQUIRE_FALSE(err);
  CHECK(j.type == "send");
  CHECK(j.payload == R"({"to":"a@b"})");
  CHECK(j.delay_ms == 5);
  CHECK(j.priority == -3);
  CHECK(j.max_attempts == 7);
  CHECK(j.dedup_key == "k");
  CHECK(j.lease_ms == 2000);
  job_spec d;
  REQUIRE_FALSE(parse_job_spec(R"({"type":"t","payload":{}})", {}, d));
  CHECK(d.delay_ms == 0);
  CHECK_FALSE(d.max_attempts);
  CHECK(d.dedup_key.empty());
}

TEST_CASE("a bad job body gets an error naming the member") {
  CHECK(job_error("nope") == "400 the request body is not valid JSON");
  CHECK(job_error("[]").rfind("400 the body must be a JSON object", 0) == 0);
  CHECK(job_error(R"({"payload":{}})") == R"(400 "type" is required)");
  CHECK(job_error(R"({"type":"a b","payload":{}})") ==
        R"(400 "type" must be a string matching [A-Za-z0-9._:-]{1,64})");
  CHECK(job_error(R"({"type":"t","payload":"x"})") ==
        R"(400 "payload" is required and must be a JSON object)");
  CHECK(job_error(R"({"type":"t","payload":{},"priority":1001})") ==
        R"(400 "priority" must be an integer from -1000 to 1000)");
  CHECK(job_error(R"({"type":"t","payload":{},"priority":1.5})") ==
        R"(400 "priority" must be an integer from -1000 to 1000)");
  CHECK(job_error(R"({"type":"t","payload":{},"max_attempts":0})") ==
        R"(400 "max_attempts" must be an integer from 1 to 1000)");
  CHECK(job_error(R"({"type":"t","payload":{},"lease_ms":999})") ==
        R"(400 "lease_ms" must be an integer from 1000 to 3600000)");
  CHECK(job_error(R"({"type":"t","payload":{},"delay_ms":18446744073709551615})") ==
        R"(400 "delay_ms" must be an integer from 0 to 31536000000)");
  CHECK(job_error(R"({"type":"t","payload":{},"when":1})") ==
        "400 unknown member \"when\" (allowed: type, payload, delay_ms, priority, "
        "max_attempts, dedup_key, lease_ms)");
  queue_limits small;
  small.max_payload_bytes = 10;
  CHECK(job_error(R"({"type":"t","payload":{"k":"0123456789"}})", small) ==
        R"(413 "payload" is 18 bytes serialized; the limit is 10)");
  CHECK(job_error(std::string(200, '[') + std::string(200, ']'))
            .rfind("400 the request body nests", 0) == 0);
}

TEST_CASE("a batch holds 1 to max_batch jobs and names the one that is wrong") {
  std::vector<job_spec> out;
  queue_limits lim;
  lim.max_batch = 2;
  CHECK_FALSE(parse_job_batch(R"({"jobs":[{"type":"a","payload":{}},{"type":"b","payload":{}}]})",
                              lim, out));
  CHECK(out.size() == 2);
  CHECK(detail_of(parse_job_batch(R"({"jobs":[]})", lim, out)) ==
        R"(400 "jobs" is required: an array of 1 to 2 objects)");
  CHECK(detail_of(parse_job_batch(R"({"jobs":[{},{},{}]})", lim, out)) ==
        R"(413 "jobs" holds 3 entries; at most 2 per request)");
  CHECK(detail_of(
            parse_job_batch(R"({"jobs":[{"type":"a","payload":{}},{"type":"b"}]})", lim, out)) ==
        R"(400 "jobs[1].payload" is required and must be a JSON object)");
  CHECK(detail_of(parse_job_batch(R"({"jobs":[7]})", lim, out)) ==
        R"(400 "jobs[0]" must be a JSON object)");
}

TEST_CASE("a lease request defaults to one job at once and checks its bounds") {
  lease_request r;
  REQUIRE_FALSE(parse_lease_request("", {}, r));
  CHECK(r.max == 1);
  CHECK(r.wait_ms == 0);
  CHECK_FALSE(r.lease_ms);
  lease_request t;
  REQUIRE_FALSE(
      parse_lease_request(R"({"max":1000,"wait_ms":30000,"types":["a","b","a"]})", {}, t));
  CHECK(t.types == std::vector<std::string>{"a", "b"});
  lease_request bad;
  CHECK(detail_of(parse_lease_request(R"({"max":0})", {}, bad)) ==
        R"(400 "max" must be an integer from 1 to 1000)");
  CHECK(detail_of(parse_lease_request(R"({"wait_ms":30001})", {}, bad)) ==
        R"(400 "wait_ms" must be an integer from 0 to 30000)");
  CHECK(detail_of(parse_lease_request(R"({"types":"a"})", {}, bad)) ==
        R"(400 "types" must be an array of at most 100 job types)");
  CHECK(detail_of(parse_lease_request(R"({"types":["a/b"]})", {}, bad)) ==
        R"(400 "types" must hold strings matching [A-Za-z0-9._:-]{1,64})");
}

TEST_CASE("complete, fail and extend bodies need the lease token") {
  job_report c;
  REQUIRE_FALSE(parse_complete_body(R"({"lease_token":"t","result":{"a":[1, 2]}})", {}, c));
  CHECK(c.result == R"({"a":[1,2]})");
  job_report none;
  REQUIRE_FALSE(parse_complete_body(R"({"lease_token":"t","result":null})", {}, none));
  CHECK(none.result.empty());
  CHECK(detail_of(parse_complete_body("{}", {}, c)) ==
        R"(400 "lease_token" is required: the string the lease handed out)");
  job_report f;
  REQUIRE_FALSE(parse_fail_body(R"({"lease_token":"t","error":"boom","retry":false})", {}, f));
  CHECK(f.error == "boom");
  CHECK_FALSE(f.retry);
  CHECK(detail_of(parse_fail_body(R"({"lease_token":"t"})", {}, f)) ==
        R"(400 "error" is required: a string saying what went wrong)");
  CHECK(detail_of(parse_fail_body(R"({"lease_token":"t","error":"x","retry":"no"})", {}, f)) ==
        R"(400 "retry" must be true or false)");
  std::string token;
  std::int64_t ms = 0;
  REQUIRE_FALSE(parse_extend_body(R"({"lease_token":"t","lease_ms":5000})", {}, token, ms));
  CHECK(ms == 5000);
  CHECK(detail_of(parse_extend_body(R"({"lease_token":"t"})", {}, token, ms)) ==
        R"(400 "lease_ms" is required: an integer from 1000 to 3600000)");
  std::vector<job_report> batch;
  REQUIRE_FALSE(parse_complete_batch(R"({"jobs":[{"id":"4","lease_token":"x"}]})", {}, batch));
  CHECK(batch.at(0).id == "4");
  CHECK(detail_of(parse_complete_batch(R"({"jobs":[{"id":"x","lease_token":"x"}]})", {}, batch)) ==
        R"(400 "jobs[0].id" is required: a job id (decimal digits))");
}

TEST_CASE("the retry delay is a full-jitter draw under a cap that doubles per attempt") {
  CHECK(retry_delay_ms(1000, 60000, 1, 0.0) == 0);
  CHECK(retry_delay_ms(1000, 60000, 1, 0.5) == 500);
  CHECK(retry_delay_ms(1000, 60000, 1, 0.999) == 999);
  CHECK(retry_delay_ms(1000, 60000, 2, 0.5) == 1000);
  CHECK(retry_delay_ms(1000, 60000, 3, 0.5) == 2000);
  CHECK(retry_delay_ms(1000, 60000, 10, 0.5) == 30000);    // capped at max
  CHECK(retry_delay_ms(1000, 60000, 200, 0.999) == 59940); // no overflow past the cap
  CHECK(retry_delay_ms(1000, 60000, 1, 7.0) == 1000);      // the draw is clamped to [0, 1]
}

TEST_CASE("a type circuit opens after threshold failures in a row, probes once, then closes") {
  type_circuit c(3, 1000);
  CHECK(c.allowance(0, 0) == -1);
  c.on_failure(10);
  c.on_failure(20);
  c.on_success(); // a success between failures starts the count again
  c.on_failure(30);
  c.on_failure(40);
  CHECK(c.current() == type_circuit::state::closed);
  c.on_failure(50);
  CHECK(c.current() == type_circuit::state::open);
  CHECK(c.allowance(1049, 0) == 0);
  CHECK(c.allowance(1050, 0) == 1); // half-open: one probe
  CHECK(c.current() == type_circuit::state::half_open);
  CHECK(c.allowance(1050, 1) == 0); // the probe is out
  c.on_failure(1100);
  CHECK(c.current() == type_circuit::state::open);
  CHECK(c.reopen_at_ms() == 2100);
  CHECK(c.allowance(2100, 0) == 1);
  c.on_success();
  CHECK(c.current() == type_circuit::state::closed);
  CHECK(c.allowance(2100, 5) == -1);
  CHECK(std::string(to_string(type_circuit::state::half_open)) == "half-open");
}

TEST_CASE("a recurring job's period changes every every_s, or at the daily time in UTC") {
  CHECK(schedule_period(0, 60, 0) == 0);
  CHECK(schedule_period(59999, 60, 0) == 0);
  CHECK(schedule_period(60000, 60, 0) == 1);
  CHECK(schedule_next_ms(1, 60, 0) == 120000);
  const std::int64_t day = 86400000;
  const std::int64_t at = 3 * 60; // 03:00
  auto d = 20000 * day;
  CHECK(schedule_period(d + 3 * 3600000 - 1, 0, at) == 19999); // yesterday's run is the last
  CHECK(schedule_period(d + 3 * 3600000, 0, at) == 20000);
  CHECK(schedule_next_ms(20000, 0, at) == d + day + 3 * 3600000);
  CHECK(schedule_period(0, 0, at) == -1); // before the first 03:00 of the epoch
}

TEST_CASE("json_quote makes a JSON string literal of any text") {
  CHECK(json_quote("a\"b\n") == R"("a\"b\n")");
  CHECK(nlohmann::json::parse(json_quote("\xff ok")).is_string()); // invalid UTF-8 replaced
}
