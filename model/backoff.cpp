// Backoff delays and the circuit breaker's state changes.
#include "model/backoff.hpp"

#include <algorithm>

namespace sessiond::model {

std::int64_t backoff_delay_ms(const backoff_policy& p, std::int64_t failures, double unit_random) {
  std::int64_t nominal = std::max<std::int64_t>(p.min_ms, 1);
  for (std::int64_t i = 1; i < failures && nominal < p.max_ms; ++i)
    nominal *= 2;
  nominal = std::min(nominal, p.max_ms);
  double r = std::clamp(unit_random, 0.0, 1.0);
  return nominal / 2 + static_cast<std::int64_t>(static_cast<double>(nominal - nominal / 2) * r);
}

bool circuit_breaker::allow(std::int64_t now_ms) {
  if (state_ == state::closed)
    return now_ms >= retry_at_ms_;
  if (state_ == state::open && now_ms >= retry_at_ms_)
    state_ = state::half_open;
  return state_ == state::half_open;
}

void circuit_breaker::on_success() {
  state_ = state::closed;
  failures_ = 0;
  retry_at_ms_ = 0;
}

std::int64_t circuit_breaker::on_failure(std::int64_t now_ms, double unit_random) {
  ++failures_;
  retry_at_ms_ = now_ms + backoff_delay_ms(policy_, failures_, unit_random);
  if (failures_ >= threshold_)
    state_ = state::open;
  return retry_at_ms_;
}

const char* to_string(circuit_breaker::state s) {
  switch (s) {
  case circuit_breaker::state::closed:
    return "closed";
  case circuit_breaker::state::open:
    return "open";
  case circuit_breaker::state::half_open:
    return "half-open";
  }
  return "unknown";
}

} // namespace sessiond::model
