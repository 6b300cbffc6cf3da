// Polls Redis INFO for the sessiond_redis_* metrics (see redis_poller.hpp).
#include "app/redis_poller.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <algorithm>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace sessiond::app {

namespace {

/// The connection hint for INFO: any one will do, it is sent once per interval.
constexpr std::size_t poll_conn = 0;
constexpr std::chrono::milliseconds retry_when_down{250};

} // namespace

/// Shared with the timer and Redis callbacks, so it outlives the poller while they are queued.
/// `mtx` serializes everything: a timer or reply handler checks `stopped` under it before it
/// touches the client, the metrics or the timer, and stop() sets it under it.
struct redis_poller::impl : std::enable_shared_from_this<impl> {
  impl(boost::asio::io_context& io, redis::client& r, metrics::redis_info_metrics& m,
       std::chrono::milliseconds every, log_sink sink)
      : timer(io), redis(r), metrics(m), interval(every), log(std::move(sink)) {}

  boost::asio::steady_timer timer;
  redis::client& redis;
  metrics::redis_info_metrics& metrics;
  const std::chrono::milliseconds interval;
  const log_sink log;

  std::mutex mtx;
  bool started = false;
  bool stopped = false;
  bool failing = false;     ///< the last poll failed (logged once per failure streak)
  bool policy_seen = false; ///< a policy was logged since start
  std::string policy;       ///< the one logged last

  // All below run with `mtx` held. Redis callbacks are always posted (never run inside
  // command()), so sending while holding it cannot deadlock.

  void schedule(std::chrono::milliseconds after) {
    timer.expires_after(after);
    timer.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (!ec)
        self->poll();
    });
  }

  void poll() {
    std::lock_guard<std::mutex> guard{mtx};
    if (stopped)
      return;
    if (!redis.connected())
      return schedule(std::min(interval, retry_when_down));
    redis.command(poll_conn, {"INFO", "all"},
                  [self = shared_from_this()](redis::errc e, redis::reply&& r) {
                    self->on_info(e, std::move(r));
                  });
  }

  void on_info(redis::errc e, redis::reply&& r) {
    std::lock_guard<std::mutex> guard{mtx};
    if (stopped)
      return;
    metrics::redis_info info;
    if (e != redis::errc::ok)
      return failed(std::string("INFO: ") + redis::to_string(e));
    if (r.type != redis::reply::kind::string)
      return failed("INFO answered " + (r.is_error() ? r.str : std::string("no text")));
    if (metrics::parse_info(r.str, info) != metrics::errc::ok)
      return failed("INFO reply not understood");
    if (info.maxmemory && !info.maxmemory_policy.empty())
      return finish(info);
    // Redis before 3.2 has neither field in INFO: ask CONFIG (managed Redis may refuse it).
    redis.command(poll_conn, {"CONFIG", "GET", "maxmemory*"},
                  [self = shared_from_this(), info](redis::errc e, redis::reply&& r) mutable {
                    std::lock_guard<std::mutex> guard{self->mtx};
                    if (self->stopped)
                      return;
                    if (e == redis::errc::ok && r.type == redis::reply::kind::array)
                      self->apply_config(r, info);
                    self->finish(info);
                  });
  }

  void apply_config(const redis::reply& r, metrics::redis_info& info) {
    std::vector<std::string> flat;
    for (const auto& el : r.elements)
      flat.push_back(el.str);
    std::map<std::string, std::string> config;
    if (metrics::parse_config_get(flat, config) == metrics::errc::ok)
      metrics::apply_config(config, info); // a bad maxmemory leaves it unknown
  }

  void finish(const metrics::redis_info& info) {
    metrics.update(info, std::chrono::system_clock::now());
    if (failing)
      log(log_level::info, "redis: INFO polls succeed again");
    failing = false;
    log_policy(info.maxmemory_policy);
    schedule(interval);
  }

  void failed(const std::string& why) {
    metrics.poll_failed();
    if (!failing)
      log(log_level::warn, "redis: INFO poll failed (" + why + "); Redis metrics are stale");
    failing = true;
    schedule(interval);
  }

  void log_policy(const std::string& now) {
    if (policy_seen && now == policy)
      return;
    policy_seen = true;
    policy = now;
    auto warning = metrics::eviction_warning(now);
    if (!warning.empty())
      log(log_level::warn, warning);
    else if (now.empty())
      log(log_level::warn, "redis: maxmemory-policy unknown (not in INFO, CONFIG GET refused); "
                           "the Redis holding sessions and queues needs maxmemory-policy "
                           "noeviction");
    else
      log(log_level::info, "redis: maxmemory-policy " + now);
  }
};

redis_poller::redis_poller(boost::asio::io_context& io, redis::client& redis,
                           metrics::redis_info_metrics& metrics, std::chrono::milliseconds interval,
                           log_sink log) {
  if (!log)
    log = [](log_level l, const std::string& line) { app::log(l, line); };
  impl_ = std::make_shared<impl>(io, redis, metrics, interval, std::move(log));
}

redis_poller::~redis_poller() {
  stop();
}

void redis_poller::start() {
  std::lock_guard<std::mutex> guard{impl_->mtx};
  if (impl_->started || impl_->stopped)
    return;
  impl_->started = true;
  impl_->schedule(std::chrono::milliseconds(0));
}

void redis_poller::stop() {
  std::lock_guard<std::mutex> guard{impl_->mtx};
  impl_->stopped = true;
  impl_->timer.cancel();
}

} // namespace sessiond::app
