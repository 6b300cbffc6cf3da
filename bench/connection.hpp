// One keep-alive client connection of the bench: connect, one request in flight, its response.
#pragma once

#include "bench/load.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <memory>
#include <string>
#include <vector>

namespace sessiond::bench {

class worker;

enum class failure { connect, io, timeout, protocol };

/// Lives on its worker's io_context and reports every outcome back to the worker, on the
/// worker's thread: connected / connect_failed after connect(), completed / failed after
/// send(). Between those it has exactly one operation pending; idle it has none, so an
/// io_context with only idle connections runs out of work.
class connection {
public:
  using endpoints = boost::asio::ip::tcp::resolver::results_type;

  /// `target` is the index of the phase target `proto` speaks to (and connect() is given).
  connection(worker& owner, boost::asio::io_context& ioc, const protocol& proto,
             std::size_t target);

  /// Connects (after `delay`, when not zero) and runs the protocol handshake.
  void connect(const endpoints& where, clock::duration delay = {});
  /// Sends one request; `scheduled` is when it was due, `now` when it is sent.
  void send(const request_spec& spec, clock::time_point scheduled, clock::time_point now,
            bool measured);
  /// Closes the socket; a pending operation then fails as a timeout.
  void abort_timeout();
  void close();

  bool open() const { return socket_.is_open(); }
  std::size_t target() const { return target_; }
  const protocol& proto() const { return proto_; }
  bool keep_alive() const { return keep_alive_; }
  /// When the pending connect or request started; time_point{} when none is pending.
  clock::time_point pending_since() const { return pending_since_; }
  clock::time_point scheduled() const { return scheduled_; }
  clock::time_point sent() const { return sent_; }
  bool measured() const { return measured_; }
  /// The request last sent, and the version its response carried (0: none).
  const request_spec& spec() const { return spec_; }
  std::uint64_t version() const { return version_; }
  const std::string& last_error() const { return last_error_; }

private:
  void start_connect(const endpoints& where);
  void on_connected(const boost::system::error_code& ec);
  void start_write();
  void start_read();
  void on_read(const boost::system::error_code& ec, std::size_t n);
  void process();
  bool finish_handshake_reply(int code);
  void response_done(int code);
  failure failure_kind() const;
  void fail(failure kind, const std::string& why);

  worker& owner_;
  const protocol& proto_;
  std::size_t target_;
  boost::asio::ip::tcp::socket socket_;
  boost::asio::steady_timer delay_timer_;
  std::unique_ptr<response_parser> parser_;
  std::string out_;
  std::vector<char> in_;
  std::size_t in_begin_ = 0;
  std::size_t in_end_ = 0;
  std::size_t handshake_left_ = 0; ///< replies still expected from the handshake
  bool connecting_ = false;
  bool timed_out_ = false;
  bool keep_alive_ = true;
  bool measured_ = false;
  request_spec spec_{op::get, 0, 0};
  std::uint64_t version_ = 0;
  clock::time_point pending_since_{};
  clock::time_point scheduled_{};
  clock::time_point sent_{};
  std::string last_error_;
};

} // namespace sessiond::bench
