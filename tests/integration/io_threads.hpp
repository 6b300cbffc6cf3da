// An io_context with its threads, for integration tests that drive the asynchronous clients.
#pragma once

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include <thread>
#include <vector>

namespace sessiond::test {

/// An io_context run by two threads for the life of a test; clients die before it.
struct io_threads {
  boost::asio::io_context io;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard{io.get_executor()};
  std::vector<std::thread> threads;
  io_threads() {
    for (int i = 0; i < 2; ++i)
      threads.emplace_back([this] { io.run(); });
  }
  ~io_threads() {
    guard.reset();
    io.stop();
    for (auto& t : threads)
      t.join();
  }
};

} // namespace sessiond::test
