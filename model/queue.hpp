// The job queue's pure rules: names, the enqueue and lease request bodies, retry backoff, the
// handler circuit and recurring-job periods. No I/O, no actors; every function is unit-tested.
#pragma once

#include "model/session.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sessiond::model {

/// Queue names, job types and dedup keys: [A-Za-z0-9._:-]{1,64}.
bool valid_queue_name(std::string_view name);
/// Job ids as the queue hands them out: decimal digits, 1-20 of them, no leading zero.
bool valid_job_id(std::string_view id);

/// Bounds of the queue API's inputs (from the configuration).
struct queue_limits {
  std::size_t max_payload_bytes = 65536;
  std::int64_t max_priority = 1000; ///< priority in [-max_priority, max_priority]
  std::int64_t max_delay_ms = 31536000000;
  std::int64_t max_attempts = 1000;
  std::int64_t min_lease_ms = 1000;
  std::int64_t max_lease_ms = 3600000;
  std::size_t max_batch = 1000; ///< jobs in one jobs:batch, completions in one jobs:complete
  std::int64_t max_lease_jobs = 1000;
  std::int64_t max_wait_ms = 30000; ///< long poll of a lease request
};

/// One job to enqueue, as POST /v1/queues/{q}/jobs sends it.
struct job_spec {
  std::string type;
  std::string payload = "{}"; ///< compact JSON of an object
  std::int64_t delay_ms = 0;
  std::int64_t priority = 0; ///< higher is leased first
  std::optional<std::int64_t> max_attempts;
  std::string dedup_key; ///< empty: none
  std::optional<std::int64_t> lease_ms;
};

/// Parses and checks the body of POST /v1/queues/{q}/jobs (one job object). The error names the
/// member; in a batch it is prefixed with the job's place ("jobs[3].priority").
std::optional<input_error> parse_job_spec(std::string_view text, const queue_limits& lim,
                                          job_spec& out);
/// The body of jobs:batch: {"jobs":[…]} with 1..max_batch job objects.
std::optional<input_error> parse_job_batch(std::string_view text, const queue_limits& lim,
                                           std::vector<job_spec>& out);

/// The body of POST /v1/queues/{q}/lease.
struct lease_request {
  std::int64_t max = 1;
  std::int64_t wait_ms = 0;
  std::optional<std::int64_t> lease_ms;
  std::vector<std::string> types; ///< empty: every type
};
std::optional<input_error> parse_lease_request(std::string_view text, const queue_limits& lim,
                                               lease_request& out);

/// A worker's report on one leased job: complete (result) or fail (error, retry).
struct job_report {
  std::string id;
  std::string lease_token;
  std::string result; ///< complete: compact JSON of the result, empty when none
  std::string error;  ///< fail: the error text
  bool retry = true;  ///< fail: false fails the job for good
};
/// POST …/jobs/{id}/complete: {"lease_token", ["result"]}.
std::optional<input_error> parse_complete_body(std::string_view text, const queue_limits& lim,
                                               job_report& out);
/// POST …/jobs:complete: {"jobs":[{"id","lease_token",["result"]}]}, 1..max_batch entries.
std::optional<input_error> parse_complete_batch(std::string_view text, const queue_limits& lim,
                                                std::vector<job_report>& out);
/// POST …/jobs/{id}/fail: {"lease_token", "error", ["retry"]}.
std::optional<input_error> parse_fail_body(std::string_view text, const queue_limits& lim,
                                           job_report& out);
/// POST …/jobs/{id}/extend: {"lease_token", "lease_ms"}.
std::optional<input_error> parse_extend_body(std::string_view text, const queue_limits& lim,
                                             std::string& token, std::int64_t& lease_ms);

/// The retry delay after failed attempt `attempt` (1 for the first): "full jitter", a uniform
/// draw in [0, min(max_ms, base_ms * 2^(attempt-1))], so workers that failed together spread
/// out instead of retrying in step. `unit_random` is in [0, 1).
std::int64_t retry_delay_ms(std::int64_t base_ms, std::int64_t max_ms, std::int64_t attempt,
                            double unit_random);

/// The circuit of one job type's built-in handler. Closed: leases run freely. `threshold`
/// failures in a row open it: nothing of the type is leased for `cooldown_ms`, then one probe
/// (half-open); its success closes the circuit, its failure opens it for another cooldown.
/// Jobs wait meanwhile, their attempts untouched. Owned by one actor; not thread-safe.
class type_circuit {
public:
  enum class state { closed, open, half_open };
  type_circuit(std::int64_t threshold, std::int64_t cooldown_ms)
      : threshold_(threshold), cooldown_ms_(cooldown_ms) {}

  /// How many jobs of the type may be leased now with `running` of them in flight: unlimited
  /// (-1) when closed, 1 minus running when half-open (one probe), 0 while open.
  std::int64_t allowance(std::int64_t now_ms, std::int64_t running);
  void on_success();
  void on_failure(std::int64_t now_ms);
  state current() const { return state_; }
  std::int64_t reopen_at_ms() const { return retry_at_ms_; }

private:
  std::int64_t threshold_;
  std::int64_t cooldown_ms_;
  state state_ = state::closed;
  std::int64_t failures_ = 0;
  std::int64_t retry_at_ms_ = 0;
};
const char* to_string(type_circuit::state s);

/// The period a recurring job belongs to at `now_ms`: floor(now / every) for `every_s`, or the
/// day number of the last daily `at` (minutes after midnight UTC) that has passed. A schedule
/// enqueues once per period; the period number is the fence across nodes.
std::int64_t schedule_period(std::int64_t now_ms, std::int64_t every_s, std::int64_t at_minute);
/// When the period after `period` begins, in ms.
std::int64_t schedule_next_ms(std::int64_t period, std::int64_t every_s, std::int64_t at_minute);

/// A JSON string literal of `text` (quotes and escapes), for errors stored as JSON.
std::string json_quote(std::string_view text);

} // namespace sessiond::model
