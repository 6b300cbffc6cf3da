// A bench connection: async connect + handshake, write one request, parse its response.
#include "bench/connection.hpp"

#include "bench/worker.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>

#include <cstring>

namespace sessiond::bench {

namespace asio = boost::asio;
using boost::system::error_code;

namespace {
constexpr std::size_t read_buffer_bytes = std::size_t{16} * 1024; // a response head must fit in it
} // namespace

connection::connection(worker& owner, asio::io_context& ioc, const protocol& proto,
                       std::size_t target)
    : owner_(owner),
      proto_(proto),
      target_(target),
      socket_(ioc),
      delay_timer_(ioc),
      parser_(proto.make_parser()),
      in_(read_buffer_bytes) {
  parser_->reset();
}

void connection::connect(const endpoints& where, clock::duration delay) {
  pending_since_ = clock::now() + delay;
  connecting_ = true;
  if (delay <= clock::duration::zero()) {
    start_connect(where);
    return;
  }
  delay_timer_.expires_after(delay);
  delay_timer_.async_wait([this, &where](const error_code&) {
    if (owner_.wants_reconnect()) {
      start_connect(where);
      return;
    }
    connecting_ = false;
    pending_since_ = {};
    owner_.abandoned(*this);
  });
}

void connection::start_connect(const endpoints& where) {
  close();
  timed_out_ = false;
  // Asio's range connect reports a failed open() (EMFILE) as "Operation canceled": check first.
  error_code ec;
  socket_.open(where.begin()->endpoint().protocol(), ec);
  if (ec) {
    asio::post(socket_.get_executor(), [this, ec] {
      fail(failure::connect, "cannot open a socket: " + ec.message() + " (see ulimit -n)");
    });
    return;
  }
  asio::async_connect(socket_, where,
                      [this](const error_code& ec, const auto&) { on_connected(ec); });
}

void connection::on_connected(const error_code& ec) {
  if (ec || timed_out_) {
    fail(failure::connect, timed_out_ ? "connect timed out" : ec.message());
    return;
  }
  error_code ignored;
  socket_.set_option(asio::ip::tcp::no_delay(true), ignored);
  out_ = proto_.handshake(handshake_left_);
  if (handshake_left_ > 0) {
    start_write();
    return;
  }
  connecting_ = false;
  pending_since_ = {};
  owner_.connected(*this);
}

void connection::send(const request_spec& spec, clock::time_point scheduled, clock::time_point now,
                      bool measured) {
  out_.clear();
  proto_.encode(spec, out_);
  spec_ = spec;
  version_ = 0;
  scheduled_ = scheduled;
  sent_ = now;
  pending_since_ = now;
  measured_ = measured;
  start_write();
}

void connection::start_write() {
  asio::async_write(socket_, asio::buffer(out_), [this](const error_code& ec, std::size_t) {
    if (ec || timed_out_)
      fail(failure_kind(), "write: " + ec.message());
    else
      start_read();
  });
}

void connection::start_read() {
  if (in_end_ == in_.size() && in_begin_ > 0) {
    std::memmove(in_.data(), in_.data() + in_begin_, in_end_ - in_begin_);
    in_end_ -= in_begin_;
    in_begin_ = 0;
  }
  if (in_end_ == in_.size()) {
    fail(failure::protocol, "response head larger than the read buffer");
    return;
  }
  socket_.async_read_some(asio::buffer(in_.data() + in_end_, in_.size() - in_end_),
                          [this](const error_code& ec, std::size_t n) { on_read(ec, n); });
}

void connection::on_read(const error_code& ec, std::size_t n) {
  if (timed_out_) { // even when the read won the race against the close
    fail(failure_kind(), "no complete response within --timeout");
    return;
  }
  if (ec == asio::error::eof && handshake_left_ == 0 && parser_->on_eof() == parse_result::done) {
    int code = parser_->code();
    version_ = parser_->version();
    parser_->reset();
    keep_alive_ = false;
    response_done(code);
    return;
  }
  if (ec) {
    fail(failure_kind(), ec == asio::error::eof ? "closed by the server" : ec.message());
    return;
  }
  in_end_ += n;
  process();
}

void connection::process() {
  for (;;) {
    const char* p = in_.data() + in_begin_;
    parse_result r = parser_->feed(p, in_.data() + in_end_);
    in_begin_ = static_cast<std::size_t>(p - in_.data());
    if (r == parse_result::need_more) {
      start_read();
      return;
    }
    if (r == parse_result::error) {
      fail(failure::protocol, parser_->error_text());
      return;
    }
    int code = parser_->code();
    keep_alive_ = parser_->keep_alive();
    version_ = parser_->version();
    parser_->reset();
    if (handshake_left_ == 0) {
      response_done(code);
      return;
    }
    if (!finish_handshake_reply(code))
      return;
  }
}

bool connection::finish_handshake_reply(int code) {
  if (!proto_.expected(code)) {
    fail(failure::connect, "handshake (AUTH/SELECT) answered " + proto_.label(code));
    return false;
  }
  if (--handshake_left_ > 0)
    return true;
  in_begin_ = in_end_ = 0;
  connecting_ = false;
  pending_since_ = {};
  owner_.connected(*this);
  return false;
}

void connection::response_done(int code) {
  if (in_begin_ != in_end_) {
    fail(failure::protocol, "bytes after the response (one request was in flight)");
    return;
  }
  in_begin_ = in_end_ = 0;
  pending_since_ = {};
  owner_.completed(*this, code);
}

failure connection::failure_kind() const {
  return connecting_ ? failure::connect : timed_out_ ? failure::timeout : failure::io;
}

void connection::fail(failure kind, const std::string& why) {
  close();
  parser_->reset();
  in_begin_ = in_end_ = 0;
  handshake_left_ = 0;
  connecting_ = false;
  timed_out_ = false;
  pending_since_ = {};
  last_error_ = why;
  owner_.failed(*this, kind);
}

void connection::abort_timeout() {
  timed_out_ = true;
  delay_timer_.cancel();
  error_code ignored;
  socket_.close(ignored);
}

void connection::close() {
  error_code ignored;
  socket_.close(ignored);
}

} // namespace sessiond::bench
