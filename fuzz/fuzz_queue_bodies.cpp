// Fuzz target: the job queue's request bodies (model/queue: enqueue, batch, lease, complete,
// jobs:complete, fail, extend), every parser fed the same bytes. Each either refuses with a 4xx
// problem or yields values within the limits, with payloads and results stored as compact JSON.
#include "fuzz/fuzz_check.hpp"
#include "model/queue.hpp"

#include <nlohmann/json.hpp>

namespace {

using sessiond::fuzz::as_text;
namespace model = sessiond::model;

/// Small limits, so the 413 paths are reached by small inputs too.
model::queue_limits limits() {
  model::queue_limits l;
  l.max_payload_bytes = 256;
  l.max_batch = 4;
  return l;
}

/// True when the input was refused (and the refusal is a proper 4xx problem).
bool refused(const std::optional<model::input_error>& err) {
  if (!err)
    return false;
  FUZZ_CHECK(err->status == 400 || err->status == 413);
  FUZZ_CHECK(err->type.rfind("urn:sessiond:problem:", 0) == 0);
  FUZZ_CHECK(!err->title.empty() && !err->detail.empty());
  return true;
}

void check_compact(const std::string& text, bool object) {
  auto j = nlohmann::json::parse(text, nullptr, false);
  FUZZ_CHECK(!j.is_discarded());
  FUZZ_CHECK(!object || j.is_object());
  FUZZ_CHECK(j.dump() == text);
}

void check_job(const model::job_spec& j, const model::queue_limits& l) {
  FUZZ_CHECK(model::valid_queue_name(j.type));
  FUZZ_CHECK(j.payload.size() <= l.max_payload_bytes);
  check_compact(j.payload, true);
  FUZZ_CHECK(j.delay_ms >= 0 && j.delay_ms <= l.max_delay_ms);
  FUZZ_CHECK(j.priority >= -l.max_priority && j.priority <= l.max_priority);
  FUZZ_CHECK(!j.max_attempts || (*j.max_attempts >= 1 && *j.max_attempts <= l.max_attempts));
  FUZZ_CHECK(j.dedup_key.empty() || model::valid_queue_name(j.dedup_key));
  FUZZ_CHECK(!j.lease_ms || (*j.lease_ms >= l.min_lease_ms && *j.lease_ms <= l.max_lease_ms));
}

void check_report(const model::job_report& r, const model::queue_limits& l) {
  FUZZ_CHECK(!r.lease_token.empty() && r.lease_token.size() <= 128);
  FUZZ_CHECK(r.result.size() <= l.max_payload_bytes);
  if (!r.result.empty())
    check_compact(r.result, false);
  FUZZ_CHECK(r.error.size() <= l.max_payload_bytes);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto text = as_text(data, size);
  const auto l = limits();
  model::job_spec job;
  if (!refused(model::parse_job_spec(text, l, job)))
    check_job(job, l);
  std::vector<model::job_spec> batch;
  if (!refused(model::parse_job_batch(text, l, batch))) {
    FUZZ_CHECK(!batch.empty() && batch.size() <= l.max_batch);
    for (const auto& j : batch)
      check_job(j, l);
  }
  model::lease_request lease;
  if (!refused(model::parse_lease_request(text, l, lease))) {
    FUZZ_CHECK(lease.max >= 1 && lease.max <= l.max_lease_jobs);
    FUZZ_CHECK(lease.wait_ms >= 0 && lease.wait_ms <= l.max_wait_ms);
    FUZZ_CHECK(lease.types.size() <= 100);
    for (const auto& t : lease.types)
      FUZZ_CHECK(model::valid_queue_name(t));
  }
  model::job_report done;
  if (!refused(model::parse_complete_body(text, l, done)))
    check_report(done, l);
  std::vector<model::job_report> many;
  if (!refused(model::parse_complete_batch(text, l, many))) {
    FUZZ_CHECK(!many.empty() && many.size() <= l.max_batch);
    for (const auto& r : many) {
      FUZZ_CHECK(model::valid_job_id(r.id));
      check_report(r, l);
    }
  }
  model::job_report failed;
  if (!refused(model::parse_fail_body(text, l, failed)))
    check_report(failed, l);
  std::string token;
  std::int64_t lease_ms = 0;
  if (!refused(model::parse_extend_body(text, l, token, lease_ms)))
    FUZZ_CHECK(!token.empty() && lease_ms >= l.min_lease_ms && lease_ms <= l.max_lease_ms);
  return 0;
}
