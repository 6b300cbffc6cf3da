// Idle-TTL arithmetic (see ttl.hpp).
#include "model/ttl.hpp"

#include <algorithm>
#include <chrono>

namespace sessiond::model {

namespace {

class wall_clock : public clock {
public:
  std::int64_t now_ms() const override {
    using namespace std::chrono;
    return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
  }
};

} // namespace

const clock& system_clock() {
  static const wall_clock instance;
  return instance;
}

std::int64_t expires_at(std::int64_t created_ms, std::int64_t last_activity_ms, std::int64_t ttl_s,
                        const ttl_policy& p) {
  return std::min(last_activity_ms + ttl_s * 1000, created_ms + p.max_lifetime_s * 1000);
}

bool should_touch(std::int64_t created_ms, std::int64_t touch_ms, std::int64_t expires_ms,
                  std::int64_t ttl_s, std::int64_t now_ms, const ttl_policy& p) {
  if (expired(expires_ms, now_ms))
    return false;
  if (now_ms - touch_ms < p.touch_interval_s * 1000)
    return false;
  return expires_at(created_ms, now_ms, ttl_s, p) > expires_ms;
}

} // namespace sessiond::model
