// See failure_limiter.hpp.
#include "adapters/auth/failure_limiter.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cstdio>

namespace sessiond::auth {

std::string client_key(std::string_view address) {
  std::string text(address);
  std::array<unsigned char, 16> v6{};
  if (text.find(':') == std::string::npos || inet_pton(AF_INET6, text.c_str(), v6.data()) != 1)
    return text; // IPv4 (or not an address: counted as itself)
  static constexpr std::array<unsigned char, 12> mapped = {0, 0, 0, 0, 0,    0,
                                                           0, 0, 0, 0, 0xff, 0xff};
  if (std::equal(mapped.begin(), mapped.end(), v6.begin()))
    return std::to_string(v6[12]) + "." + std::to_string(v6[13]) + "." + std::to_string(v6[14]) +
           "." + std::to_string(v6[15]);
  char buf[48];
  std::snprintf(buf, sizeof buf, "%02x%02x:%02x%02x:%02x%02x:%02x%02x::/64", v6[0], v6[1], v6[2],
                v6[3], v6[4], v6[5], v6[6], v6[7]);
  return buf;
}

failure_limiter::failure_limiter(limiter_options opts) : opts_(opts) {
  if (opts_.max_addresses == 0)
    opts_.max_addresses = 1;
}

std::int64_t failure_limiter::blocked_ms(const std::string& key, std::int64_t now_ms) const {
  if (now_ms >= any_blocked_until_ms_.load(std::memory_order_acquire))
    return 0;
  std::lock_guard<std::mutex> guard{mtx_};
  auto it = table_.find(key);
  if (it == table_.end() || it->second.blocked_until_ms <= now_ms)
    return 0;
  return it->second.blocked_until_ms - now_ms;
}

bool failure_limiter::record_failure(const std::string& key, std::int64_t now_ms) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto it = table_.find(key);
  if (it == table_.end()) {
    if (table_.size() >= opts_.max_addresses) { // forget the address that failed longest ago
      table_.erase(lru_.back());
      lru_.pop_back();
    }
    lru_.push_front(key);
    it = table_.emplace(key, entry{now_ms, 0, 0, lru_.begin()}).first;
  } else {
    lru_.splice(lru_.begin(), lru_, it->second.lru);
  }
  entry& e = it->second;
  if (now_ms - e.window_start_ms >= opts_.window_ms) { // a new window
    e.window_start_ms = now_ms;
    e.failures = 0;
  }
  ++e.failures;
  if (e.failures < opts_.max_failures || e.blocked_until_ms > now_ms)
    return false;
  e.blocked_until_ms = now_ms + opts_.window_ms;
  e.window_start_ms = e.blocked_until_ms; // counting starts afresh once the block is over
  e.failures = 0;
  if (e.blocked_until_ms > any_blocked_until_ms_.load(std::memory_order_relaxed))
    any_blocked_until_ms_.store(e.blocked_until_ms, std::memory_order_release);
  return true;
}

std::size_t failure_limiter::size() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return table_.size();
}

} // namespace sessiond::auth
