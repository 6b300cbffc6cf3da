// Polls Redis INFO on a timer of the node's io_context and feeds the sessiond_redis_* metrics;
// logs the eviction-policy warning at start-up and whenever the policy changes.
#pragma once

#include "adapters/metrics/redis_info.hpp"
#include "adapters/redis/client.hpp"
#include "app/log.hpp"

#include <chrono>
#include <functional>
#include <memory>
#include <string>

namespace boost::asio {
class io_context;
} // namespace boost::asio

namespace sessiond::app {

/// Every `interval` sends `INFO all` (and `CONFIG GET maxmemory*` only when INFO lacks the
/// maxmemory fields, as before Redis 3.2; a refused CONFIG, as on managed Redis, leaves the
/// policy unknown) and updates `metrics`. One poll at a time; no CAF. While no Redis
/// connection is up it checks again every 250 ms without counting an error (sessiond_redis_up
/// shows that); a poll that was sent and failed counts in sessiond_redis_info_poll_errors_total.
/// The first policy read, and every change of it, is logged: WARN with eviction_warning() for
/// a policy that may evict sessiond's keys, INFO otherwise.
class redis_poller {
public:
  using log_sink = std::function<void(log_level, const std::string&)>;

  /// `redis`, `metrics` and `io` must outlive the poller's last poll: stop() guarantees that
  /// nothing touches `redis` or `metrics` after it returned. `log` defaults to app::log.
  redis_poller(boost::asio::io_context& io, redis::client& redis,
               metrics::redis_info_metrics& metrics, std::chrono::milliseconds interval,
               log_sink log = {});
  ~redis_poller();
  redis_poller(const redis_poller&) = delete;
  redis_poller& operator=(const redis_poller&) = delete;

  /// Polls at once, then every interval. Once only; a second call does nothing.
  void start();
  /// Stops polling. Any thread, idempotent; waits for an update in progress to finish.
  void stop();

private:
  struct impl;
  std::shared_ptr<impl> impl_;
};

} // namespace sessiond::app
