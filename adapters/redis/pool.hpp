// Internal to the Redis client: the connections to one server (one Redis, or one master of a
// cluster). client.cpp routes commands to pools; nothing outside adapters/redis includes this.
#pragma once

#include "adapters/redis/client.hpp"

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace sessiond::redis::detail {

/// What a caller hands to a connection's strand.
struct request {
  std::vector<std::string> args;      ///< the command, or an eval's keys
  std::vector<std::string> eval_args; ///< eval only
  std::shared_ptr<const script> scr;  ///< eval only
  callback cb;
  bool asking = false; ///< cluster ASK redirect: ASKING goes out right before the command
  /// eval only: WAIT <wait_replicas> <wait_timeout_ms> goes out right after it on the same
  /// connection, and the callback gets the eval's reply once WAIT saw that many replicas take
  /// it, else an error reply "NOREPLICAS …" (the write happened on the master only).
  int wait_replicas = 0;
  int wait_timeout_ms = 0;
};

/// Runs a user callback, swallowing what it throws (it must not unwind through Asio).
void deliver(callback& cb, errc e, reply&& r);

/// Scripts interned per thread by SHA-1, so an eval shares the text instead of copying it.
std::shared_ptr<const script> intern(const script& s);

/// `opts.connections` pipelined connections to `opts.host`:`opts.port`, connection i on
/// loops[i % loops.size()], each reconnecting with backoff until stop(). Thread-safe.
class pool {
public:
  pool(const std::vector<boost::asio::io_context*>& loops, client_options opts);
  ~pool();
  pool(const pool&) = delete;
  pool& operator=(const pool&) = delete;

  void start();
  void stop();
  /// Hands `r` to the hinted connection, or the next one up. False, `r` untouched, when none is
  /// up (or the pool is stopped).
  bool try_submit(std::size_t hint, request& r);
  /// Fails `cb` with `e` on the hinted connection's strand (behind its earlier callbacks).
  void refuse(std::size_t hint, callback&& cb, errc e);
  std::size_t local_hint(std::size_t hint) const;
  bool connected() const;
  /// True once any connection of the pool has been up (a pool still making its first
  /// connections is worth waiting for; one that went down is not).
  bool ever_up() const;
  bool stopped() const;
  std::string last_error() const;
  client_stats stats() const;
  /// As client::on_state_change, for this pool.
  void on_state_change(std::function<void(bool up)> f);
  const client_options& options() const;
  /// host:port ([v6]:port for an IPv6 literal).
  const std::string& address() const { return address_; }

private:
  struct impl;
  std::shared_ptr<impl> impl_;
  std::string address_;
};

/// "host:port", bracketing an IPv6 literal.
std::string address_of(const std::string& host, std::uint16_t port);

} // namespace sessiond::redis::detail
