// Parked long-poll lease requests: one list per queue, one poll timer for all, all on one loop.
#include "adapters/queue/lease_waiters.hpp"

#include "adapters/queue/store.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <list>
#include <vector>

namespace sessiond::queue {

using clock_type = std::chrono::steady_clock;

struct lease_waiters::impl : std::enable_shared_from_this<impl> {
  struct waiter {
    clock_type::time_point deadline;
    attempt_fn attempt;
    expire_fn expire;
    bool busy = false; ///< an attempt is out; its answer decides
  };
  struct waited_queue {
    std::list<std::shared_ptr<waiter>> waiters;
    std::int64_t seen_seq = -1; ///< the queue's sequence counter at the last look
    bool looking = false;       ///< a look at the counter is out
  };

  impl(boost::asio::io_context& io, store& s, std::size_t max, std::chrono::milliseconds poll)
      : io_(io), store_(s), max_(max), poll_(poll), timer_(io) {}

  // Everything below runs on io_ (one thread), so the maps need no lock; `count_` is read by
  // park() on other threads to refuse quickly.
  void add(const std::string& q, std::shared_ptr<waiter> w) {
    if (stopped_) {
      count_.fetch_sub(1);
      return w->expire();
    }
    auto& wq = queues_[q];
    if (wq.waiters.empty()) // what the counter was at the last look, if it was looked at lately
      if (auto it = last_seq_.find(q); it != last_seq_.end())
        wq.seen_seq = it->second;
    wq.waiters.push_back(w);
    arm();
  }

  void run_attempt(const std::string& q, const std::shared_ptr<waiter>& w) {
    if (w->busy)
      return;
    w->busy = true;
    auto self = shared_from_this();
    w->attempt([self, q, w](bool answered) {
      boost::asio::post(self->io_, [self, q, w, answered] { self->attempted(q, w, answered); });
    });
  }

  void attempted(const std::string& q, const std::shared_ptr<waiter>& w, bool answered) {
    w->busy = false;
    if (answered)
      drop(q, w);
  }

  void drop(const std::string& q, const std::shared_ptr<waiter>& w) {
    auto it = queues_.find(q);
    if (it == queues_.end())
      return;
    auto& list = it->second.waiters;
    for (auto i = list.begin(); i != list.end(); ++i)
      if (*i == w) {
        list.erase(i);
        count_.fetch_sub(1);
        break;
      }
    if (list.empty() && !it->second.looking)
      forget(it);
  }

  /// Drops a queue nobody waits for, keeping the counter it had: the next request parked on it
  /// is woken only if the counter moved since. A job that became waiting between a request's
  /// first try and its parking thus still wakes it at the first look.
  void forget(std::map<std::string, waited_queue>::iterator it) {
    if (it->second.seen_seq >= 0) {
      if (last_seq_.size() >= 10000)
        last_seq_.clear();
      last_seq_[it->first] = it->second.seen_seq;
    }
    queues_.erase(it);
  }

  void wake(const std::string& q) {
    auto it = queues_.find(q);
    if (it == queues_.end())
      return;
    auto list = it->second.waiters; // a copy: attempts may answer at once and drop themselves
    for (auto& w : list)
      run_attempt(q, w);
  }

  void arm() {
    if (armed_ || queues_.empty() || stopped_)
      return;
    armed_ = true;
    timer_.expires_after(poll_);
    timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      self->armed_ = false;
      if (!ec)
        self->on_poll();
    });
  }

  void on_poll() {
    auto now = clock_type::now();
    std::vector<std::pair<std::string, std::shared_ptr<waiter>>> expired;
    for (auto& [q, wq] : queues_)
      for (auto& w : wq.waiters)
        if (!w->busy && now >= w->deadline)
          expired.emplace_back(q, w);
    for (auto& [q, w] : expired) {
      drop(q, w);
      w->expire();
    }
    for (auto& [q, wq] : queues_)
      look(q, wq);
    arm();
  }

  /// Other nodes' enqueues show as a moved sequence counter: then the queue's waiters try again.
  void look(const std::string& q, waited_queue& wq) {
    if (wq.looking || wq.waiters.empty())
      return;
    wq.looking = true;
    auto self = shared_from_this();
    store_.sequence(0, q, [self, q](std::pair<outcome_base, std::int64_t>&& r) {
      boost::asio::post(self->io_, [self, q, r = std::move(r)] { self->looked(q, r); });
    });
  }

  void looked(const std::string& q, const std::pair<outcome_base, std::int64_t>& r) {
    auto it = queues_.find(q);
    if (it == queues_.end())
      return;
    auto& wq = it->second;
    wq.looking = false;
    bool moved = r.first.ok() && r.second != wq.seen_seq;
    if (r.first.ok())
      wq.seen_seq = r.second;
    if (wq.waiters.empty())
      return forget(it);
    if (moved)
      wake(q);
  }

  void stop_all() {
    stopped_ = true;
    timer_.cancel();
    auto all = std::move(queues_);
    queues_.clear();
    for (auto& [q, wq] : all)
      for (auto& w : wq.waiters) {
        count_.fetch_sub(1);
        w->expire();
      }
  }

  boost::asio::io_context& io_;
  store& store_;
  const std::size_t max_;
  const std::chrono::milliseconds poll_;
  boost::asio::steady_timer timer_;
  std::map<std::string, waited_queue> queues_;
  std::map<std::string, std::int64_t> last_seq_; ///< of queues nobody waits for now
  bool armed_ = false;
  bool stopped_ = false;
  std::atomic<std::size_t> count_{0};
  std::atomic<bool> closing_{false};
};

lease_waiters::lease_waiters(boost::asio::io_context& io, store& s, std::size_t max_waiters,
                             std::chrono::milliseconds poll)
    : impl_(std::make_shared<impl>(io, s, max_waiters, poll)) {}

lease_waiters::~lease_waiters() {
  stop();
}

bool lease_waiters::park(const std::string& queue, clock_type::time_point deadline,
                         attempt_fn attempt, expire_fn expire) {
  if (impl_->closing_.load())
    return false;
  if (impl_->count_.fetch_add(1) >= impl_->max_) {
    impl_->count_.fetch_sub(1);
    return false;
  }
  auto w = std::make_shared<impl::waiter>();
  w->deadline = deadline;
  w->attempt = std::move(attempt);
  w->expire = std::move(expire);
  boost::asio::post(impl_->io_, [self = impl_, queue, w] { self->add(queue, w); });
  return true;
}

void lease_waiters::notify(const std::string& queue) {
  if (impl_->count_.load() == 0)
    return;
  boost::asio::post(impl_->io_, [self = impl_, queue] { self->wake(queue); });
}

void lease_waiters::stop() {
  if (impl_->closing_.exchange(true))
    return;
  boost::asio::post(impl_->io_, [self = impl_] { self->stop_all(); });
}

std::size_t lease_waiters::parked() const {
  return impl_->count_.load();
}

} // namespace sessiond::queue
