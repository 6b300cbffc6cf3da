// Long-poll lease requests parked until a job may be there for them: woken at once by this
// node's own enqueues and promotions (notify), and by other nodes' through a cheap look at each
// waited queue's sequence counter every queues.lease_poll_ms. Bounded: past max_waiters a lease
// request is refused (the API answers 503 + Retry-After) instead of being parked.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

namespace boost::asio {
class io_context;
} // namespace boost::asio

namespace sessiond::queue {

class store;

class lease_waiters {
public:
  /// Tries the lease again; calls `answered(true)` when it answered the request (jobs, or an
  /// error), `answered(false)` when there was nothing and the request stays parked.
  using attempt_fn = std::function<void(std::function<void(bool answered)>)>;
  /// Answers the request with an empty list (its wait_ms passed, or the node stops).
  using expire_fn = std::function<void()>;

  /// Timers run on `io` (one thread). `s` must outlive this object.
  lease_waiters(boost::asio::io_context& io, store& s, std::size_t max_waiters,
                std::chrono::milliseconds poll);
  ~lease_waiters();
  lease_waiters(const lease_waiters&) = delete;
  lease_waiters& operator=(const lease_waiters&) = delete;

  /// Parks a request until `deadline`; false when max_waiters are parked already or after stop()
  /// (the caller answers). Thread-safe.
  bool park(const std::string& queue, std::chrono::steady_clock::time_point deadline,
            attempt_fn attempt, expire_fn expire);
  /// Jobs may have become waiting in `queue`: its parked requests try again now. Thread-safe.
  void notify(const std::string& queue);
  /// Answers every parked request with an empty list; later park() calls return false.
  void stop();
  std::size_t parked() const;

private:
  struct impl;
  std::shared_ptr<impl> impl_;
};

} // namespace sessiond::queue
