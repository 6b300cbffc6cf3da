// A value an actor publishes for other threads to read (the HTTP status, readiness, metrics)
// without asking the actor, which may be busy in a blocking run.
#pragma once

#include <mutex>

namespace sessiond::messages {

/// Written by its one owner (an actor), read from any thread: both take a short lock and a
/// copy, never a reference.
template <class T>
class published {
public:
  using snapshot = T;

  T get() const {
    std::lock_guard<std::mutex> guard{mtx_};
    return value_;
  }

  /// Runs `f(T&)` under the lock.
  template <class F>
  void update(F&& f) {
    std::lock_guard<std::mutex> guard{mtx_};
    f(value_);
  }

private:
  mutable std::mutex mtx_;
  T value_;
};

} // namespace sessiond::messages
