// Idle-TTL arithmetic: when a session expires and when a read slides its TTL.
// Time is injected through `clock`, so tests never sleep.
#pragma once

#include <atomic>
#include <cstdint>

namespace sessiond::model {

/// Milliseconds since the Unix epoch. The node uses system_clock(); tests use manual_clock.
class clock {
public:
  virtual ~clock() = default;
  virtual std::int64_t now_ms() const = 0;
};

/// The wall clock.
const clock& system_clock();

/// A clock that moves only when told to (tests). Atomic: the test thread advances it while the
/// node's actors and I/O threads read it.
class manual_clock : public clock {
public:
  explicit manual_clock(std::int64_t start_ms) : now_(start_ms) {}
  std::int64_t now_ms() const override { return now_.load(std::memory_order_relaxed); }
  void advance_ms(std::int64_t d) { now_.fetch_add(d, std::memory_order_relaxed); }

private:
  std::atomic<std::int64_t> now_;
};

struct ttl_policy {
  std::int64_t touch_interval_s = 60;
  std::int64_t max_lifetime_s = 604800;
};

/// When a session last active at `last_activity_ms` expires: its idle TTL after that, but never
/// past created + max lifetime.
std::int64_t expires_at(std::int64_t created_ms, std::int64_t last_activity_ms, std::int64_t ttl_s,
                        const ttl_policy& p);

/// Whether a read at `now_ms` slides the TTL: at most once per touch interval, and only while
/// sliding still moves the expiry (it stops at the max lifetime).
bool should_touch(std::int64_t created_ms, std::int64_t touch_ms, std::int64_t expires_ms,
                  std::int64_t ttl_s, std::int64_t now_ms, const ttl_policy& p);

/// A session is live while now < expires.
inline bool expired(std::int64_t expires_ms, std::int64_t now_ms) {
  return now_ms >= expires_ms;
}

} // namespace sessiond::model
