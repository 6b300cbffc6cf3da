// pool: each worker owns one lazily connected client and reconnects after a loss.
#include "adapters/postgres/pool.hpp"

namespace sessiond::postgres {

pool::pool(client_options opts, std::size_t threads, std::size_t max_queue)
    : opts_(std::move(opts)), max_queue_(max_queue) {
  for (std::size_t i = 0; i < threads; ++i)
    threads_.emplace_back([this] { work(); });
}

pool::~pool() {
  stop();
}

bool pool::submit(job j) {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    if (stopped_ || queue_.size() >= max_queue_)
      return false;
    queue_.push_back(std::move(j));
  }
  cv_.notify_one();
  return true;
}

void pool::stop() {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    if (stopped_)
      return;
    stopped_ = true;
    queue_.clear();
  }
  cv_.notify_all();
  for (auto& t : threads_)
    t.join();
}

void pool::work() {
  std::unique_ptr<client> c;
  for (;;) {
    job j;
    {
      std::unique_lock<std::mutex> lock{mtx_};
      cv_.wait(lock, [&] { return stopped_ || !queue_.empty(); });
      if (stopped_)
        return;
      j = std::move(queue_.front());
      queue_.pop_front();
    }
    try {
      if (!c)
        c = std::make_unique<client>(opts_);
    } catch (const pg_error&) {
      c.reset();
    }
    try {
      j(c.get());
    } catch (...) {
      c.reset(); // a failed job may have left the connection in any state
    }
  }
}

} // namespace sessiond::postgres
