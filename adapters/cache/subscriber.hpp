// One Redis pub/sub subscription on a connection of its own (redis::client answers each command
// exactly once and cannot hold SUBSCRIBE): the cache's cross-node invalidations. Reconnects with
// backoff; each (re)subscription is reported, so the cache can empty its near cache when it may
// have missed messages.
#pragma once

#include "adapters/redis/client.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace sessiond::cache {

struct subscriber_options {
  /// Host, port, password, db, TLS and the CA/client certificate files as the node's client has
  /// them (connections is ignored: one connection). connect_timeout bounds each connect.
  redis::client_options redis;
  std::string channel;
  /// A PING this often while subscribed; no answer within redis.command_timeout drops the
  /// connection (a silently dead TCP connection is found within ping_interval + timeout).
  std::chrono::milliseconds ping_interval{1000};
};

class subscriber {
public:
  /// Runs on the subscriber's thread for every message on the channel, in order.
  using message_fn = std::function<void(std::string_view payload)>;
  /// Runs on the subscriber's thread: true after every successful SUBSCRIBE (the first one
  /// included), false when a subscription is lost.
  using state_fn = std::function<void(bool subscribed)>;

  subscriber(subscriber_options opts, message_fn on_message, state_fn on_state);
  ~subscriber(); ///< stop()
  subscriber(const subscriber&) = delete;
  subscriber& operator=(const subscriber&) = delete;

  /// Starts the thread; it connects, subscribes and reconnects (redis.reconnect_min ..
  /// reconnect_max, doubling) until stop().
  void start();
  /// Closes the connection and joins the thread within about 100 ms. Idempotent, from any
  /// thread; no callback runs once it returned. Called from a callback it only ends the loop: a
  /// later stop() or the destructor joins, and those must not run on the subscriber's thread.
  /// A stopped subscriber does not start again.
  void stop();

  bool subscribed() const;
  /// Subscriptions made again after the first.
  std::uint64_t resubscriptions() const;
  /// Why the last connection or subscription failed; empty while subscribed.
  std::string last_error() const;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace sessiond::cache
