// A few blocking PostgreSQL connections on worker threads with a bounded queue, for work that
// must not block the caller (the shards' read-through on a Redis miss).
#pragma once

#include "adapters/postgres/client.hpp"

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace sessiond::postgres {

class pool {
public:
  /// A job gets a connected client, or nullptr when PostgreSQL cannot be reached; it must
  /// catch what it throws (an escaping pg_error drops the connection and is swallowed).
  using job = std::function<void(client*)>;

  pool(client_options opts, std::size_t threads, std::size_t max_queue);
  ~pool();
  pool(const pool&) = delete;
  pool& operator=(const pool&) = delete;

  /// Queues `j`; false (and `j` not run) when the queue is full or the pool stopped.
  bool submit(job j);
  /// Finishes the jobs running now, drops the queued ones unrun and joins the threads.
  /// Idempotent; the destructor calls it.
  void stop();

private:
  void work();

  client_options opts_;
  std::size_t max_queue_;
  std::mutex mtx_;
  std::condition_variable cv_;
  std::deque<job> queue_;
  bool stopped_ = false;
  std::vector<std::thread> threads_;
};

} // namespace sessiond::postgres
