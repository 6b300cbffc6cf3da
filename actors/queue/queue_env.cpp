// The queue settings the scripts apply, from a queue's configuration.
#include "actors/queue/queue_env.hpp"

namespace sessiond::actors {

queue::queue_policy policy_of(const config::queue_settings& s) {
  queue::queue_policy p;
  p.max_length = s.max_length;
  p.lease_ms = s.lease_ms;
  p.max_attempts = s.max_attempts;
  p.backoff_ms = s.backoff_ms;
  p.max_backoff_ms = s.max_backoff_ms;
  p.max_stalled = s.max_stalled;
  p.keep_completed = s.keep_completed;
  p.keep_failed = s.keep_failed;
  p.keep_age_s = s.keep_age_s;
  return p;
}

} // namespace sessiond::actors
