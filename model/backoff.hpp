// Retry pacing for a failing dependency: exponential backoff with jitter and a circuit breaker.
// Pure: time and randomness are passed in, so tests never sleep.
#pragma once

#include <cstdint>

namespace sessiond::model {

struct backoff_policy {
  std::int64_t min_ms = 100;
  std::int64_t max_ms = 60000;
};

/// The wait before the next attempt after `failures` (>= 1) failures in a row: min_ms doubled
/// per failure, capped at max_ms, then scaled into [half, full] by `unit_random` in [0, 1)
/// ("equal jitter": nodes that failed together do not retry together, and the wait never drops
/// below half the nominal value).
std::int64_t backoff_delay_ms(const backoff_policy& p, std::int64_t failures, double unit_random);

/// Closed: attempts run freely. After `threshold` failures in a row it opens: no attempt until
/// the backoff delay has passed, then one probe (half-open); a success closes it, a failure
/// opens it again for a longer delay.
class circuit_breaker {
public:
  enum class state { closed, open, half_open };

  circuit_breaker(backoff_policy p, std::int64_t threshold) : policy_(p), threshold_(threshold) {}

  /// Whether an attempt may start at `now_ms` (an open circuit turns half-open when due).
  bool allow(std::int64_t now_ms);
  void on_success();
  /// Records a failure at `now_ms`; returns the time of the next allowed attempt.
  std::int64_t on_failure(std::int64_t now_ms, double unit_random);

  state current() const { return state_; }
  std::int64_t failures() const { return failures_; }
  /// When the next attempt is due after a failure (0 when none failed).
  std::int64_t retry_at_ms() const { return retry_at_ms_; }

private:
  backoff_policy policy_;
  std::int64_t threshold_;
  state state_ = state::closed;
  std::int64_t failures_ = 0;
  std::int64_t retry_at_ms_ = 0;
};

const char* to_string(circuit_breaker::state s);

} // namespace sessiond::model
