// Limits failed authentications per client address, so that tokens cannot be guessed at line
// rate: past `max_failures` within `window_ms` an address is refused for `window_ms` before its
// token is even looked at. The table of addresses is bounded (least recently failed first out),
// so a flood of addresses cannot grow memory without bound.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <list>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace sessiond::auth {

struct limiter_options {
  std::int64_t max_failures = 20;    ///< failures within a window that block the address
  std::int64_t window_ms = 10000;    ///< the counting window, and how long a block lasts
  std::size_t max_addresses = 10000; ///< addresses tracked at most
};

/// The key an address is counted under: an IPv4 address as it is, an IPv6 address by its /64
/// (one host usually holds a whole /64, so counting single IPv6 addresses would count nothing),
/// an IPv4-mapped IPv6 address as its IPv4 address. Anything unparsable is its own key.
std::string client_key(std::string_view address);

/// Thread-safe. Time is passed in (milliseconds of a monotonic clock), so tests need no sleep.
/// While no address is blocked, blocked_ms() is one atomic load: no lock on the request path.
class failure_limiter {
public:
  explicit failure_limiter(limiter_options opts = {});

  /// How long `key` stays blocked from `now_ms` (0: not blocked).
  std::int64_t blocked_ms(const std::string& key, std::int64_t now_ms) const;
  /// Counts one failure of `key`; true when this failure blocked it.
  bool record_failure(const std::string& key, std::int64_t now_ms);
  /// Addresses in the table now.
  std::size_t size() const;
  const limiter_options& options() const { return opts_; }

private:
  struct entry {
    std::int64_t window_start_ms = 0;
    std::int64_t failures = 0;
    std::int64_t blocked_until_ms = 0;
    std::list<std::string>::iterator lru; ///< position in lru_ (front: most recent failure)
  };
  limiter_options opts_;
  mutable std::mutex mtx_;
  std::unordered_map<std::string, entry> table_;
  std::list<std::string> lru_;
  /// The latest blocked_until of any entry: past it nobody is blocked, and no lock is taken.
  std::atomic<std::int64_t> any_blocked_until_ms_{0};
};

} // namespace sessiond::auth
