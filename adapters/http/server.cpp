// HTTP/1.1 server on Asio with Beast's incremental request parser: one strand per connection,
// keep-alive, size limits, header/idle timeouts, and answers from any thread via responders.
#include "adapters/http/server.hpp"

#include "model/text.hpp"

#include <boost/asio/dispatch.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/basic_parser.hpp>
#include <boost/beast/http/error.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <list>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string_view>
#include <system_error>

namespace sessiond::http {
namespace {

using model::iequals;

namespace asio = boost::asio;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;
using steady = std::chrono::steady_clock;
using strand_t = asio::strand<asio::io_context::executor_type>;
using socket_t = tcp::socket::rebind_executor<strand_t>::other;
using conn_timer = asio::basic_waitable_timer<steady, asio::wait_traits<steady>, strand_t>;

constexpr std::size_t read_chunk_bytes = 4096;
constexpr std::size_t max_read_chunk_bytes = 64 << 10;
constexpr std::size_t linger_max_bytes = 1 << 20;
constexpr std::chrono::milliseconds linger_max{2000};
constexpr std::string_view continue_line = "HTTP/1.1 100 Continue\r\n\r\n";

method to_method(bhttp::verb v) {
  switch (v) {
  case bhttp::verb::get:
    return method::get;
  case bhttp::verb::head:
    return method::head;
  case bhttp::verb::put:
    return method::put;
  case bhttp::verb::post:
    return method::post;
  case bhttp::verb::patch:
    return method::patch;
  case bhttp::verb::delete_:
    return method::del;
  case bhttp::verb::options:
    return method::options;
  default:
    return method::other;
  }
}

/// A header name or value we may copy into the response: no CR/LF, so no header injection.
bool header_safe(std::string_view s) {
  return s.find_first_of("\r\n") == std::string_view::npos;
}

void append_uint(std::string& out, std::uint64_t v) {
  char buf[24];
  auto res = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, res.ptr);
}

/// Beast's parser without a field container: the request is built in place, so parsing
/// costs no allocation beyond the target, Content-Type and body strings handed over.
class request_reader final : public bhttp::basic_parser<true> {
public:
  request req;
  int version = 11;
  bool expect_continue = false;
  bool continue_sent = false;

private:
  using sv = boost::beast::string_view;

  void on_request_impl(bhttp::verb v, sv, sv target, int ver, error_code&) override {
    req.verb = to_method(v);
    req.target.assign(target.data(), target.size());
    version = ver;
  }
  void on_response_impl(int, sv, int, error_code&) override {}
  void on_field_impl(bhttp::field name, sv, sv value, error_code&) override {
    switch (name) {
    case bhttp::field::content_type:
      if (req.content_type.empty())
        req.content_type.assign(value.data(), value.size());
      break;
    case bhttp::field::if_match:
      append_list(req.if_match, value);
      req.has_if_match = true;
      break;
    case bhttp::field::if_none_match:
      append_list(req.if_none_match, value);
      req.has_if_none_match = true;
      break;
    case bhttp::field::authorization:
      append_list(req.authorization, value);
      break;
    case bhttp::field::expect:
      expect_continue = iequals(value, "100-continue");
      break;
    default:
      break;
    }
  }
  void on_header_impl(error_code&) override {}
  void on_body_init_impl(boost::optional<std::uint64_t> const& length, error_code&) override {
    // Content-Length was already checked against body_limit by the parser.
    if (length)
      req.body.reserve(static_cast<std::size_t>(*length));
  }
  std::size_t on_body_impl(sv body, error_code&) override {
    req.body.append(body.data(), body.size());
    return body.size();
  }
  void on_chunk_header_impl(std::uint64_t, sv, error_code&) override {}
  std::size_t on_chunk_body_impl(std::uint64_t, sv body, error_code&) override {
    req.body.append(body.data(), body.size());
    return body.size();
  }
  void on_finish_impl(error_code&) override {}

  /// Repeated list-valued fields (If-Match) combine with ", " (RFC 9110 §5.3).
  static void append_list(std::string& out, sv value) {
    if (!out.empty())
      out.append(", ");
    out.append(value.data(), value.size());
  }
};

class connection;

/// Shared state of one server: acceptor, limits, counters and the set of open connections.
/// Connections keep it alive, so it outlives `server` while any connection does.
class listener : public std::enable_shared_from_this<listener> {
public:
  listener(std::vector<asio::io_context*> loops, server_options opts, handler h);

  std::uint16_t bind();
  std::uint16_t start();
  /// Closes the acceptor and tells every connection to finish; `force` closes them now.
  void stop(bool force);
  void unregister(std::list<connection*>::iterator it);

  const server_options opts_;
  const handler handler_;
  const steady::duration tick_; ///< timer granularity: the shortest timeout
  std::atomic<bool> draining_{false};
  std::atomic<bool> closed_{false}; ///< server destroyed: hand nothing more to the handler
  std::atomic<std::uint64_t> accepted_{0}, open_{0}, requests_{0}, rejected_{0}, refused_{0};
  std::atomic<std::size_t> in_flight_{0};

private:
  /// Closes the acceptor and throws std::system_error naming the address.
  [[noreturn]] void fail(const error_code& ec, const char* what);
  void accept_next();
  void on_accept(error_code ec, socket_t socket);
  void admit(socket_t socket);

  const std::vector<asio::io_context*> loops_; ///< accepted connections go round-robin onto these
  std::mutex mu_; ///< guards the members below; taken on accept and close, never per request
  std::size_t next_loop_ = 0;
  tcp::acceptor acceptor_;
  asio::steady_timer accept_retry_;
  bool accepting_ = false;
  std::uint16_t bound_port_ = 0;
  std::list<connection*> conns_;
};

/// One client connection. Every member function runs on the connection's strand, except
/// deliver(), which any thread may call. A pending timer wait always holds a reference,
/// so the connection lives until it closes, including while the handler owes an answer.
class connection final : public std::enable_shared_from_this<connection> {
public:
  connection(std::shared_ptr<listener> owner, socket_t socket);
  ~connection();
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  const strand_t& strand() const { return strand_; }
  void set_registration(std::list<connection*>::iterator it) { reg_ = it; }
  void start();
  void drain();
  void close();
  /// The handler's answer, from any thread; written on the strand.
  void deliver(response&& r);

private:
  enum class phase { waiting, reading, handling, writing, lingering, closed };

  void new_parser();
  void read_more();
  void on_read(error_code ec, std::size_t n);
  void parse();
  void send_continue();
  void dispatch();
  void reject(error_code ec);
  void write_response(response&& r);
  void render_head(const response& r, bool with_body);
  void write();
  void on_written(error_code ec);
  void next_request();
  void start_linger();
  void linger_read();
  void set_deadline(steady::duration d) { deadline_ = steady::now() + d; }
  void arm_timer(steady::time_point at);
  void on_timer(error_code ec);
  void release_counts();

  std::shared_ptr<listener> owner_;
  strand_t strand_;
  socket_t socket_;
  conn_timer timer_;
  boost::beast::flat_buffer buffer_;
  std::optional<request_reader> parser_;
  std::optional<response> out_;
  std::string head_;
  std::list<connection*>::iterator reg_;
  steady::time_point deadline_;
  std::size_t lingered_bytes_ = 0;
  phase phase_ = phase::waiting;
  std::string remote_address_; ///< the peer's IP, copied into each request
  bool first_ = true;          ///< first request: its timeout runs from accept
  bool keep_alive_ = true;     ///< of the request being answered
  bool http10_ = false;
  bool head_only_ = false; ///< HEAD: send the headers of the response, not its body
  bool close_after_ = false;
  bool linger_ = false;  ///< error answer: drain the client's input before closing
  bool pending_ = false; ///< counted in in_flight_
  bool counted_open_ = true;
};

/// Hands the answer to its connection; a weak reference, so a forgotten responder
/// cannot keep a closed connection's memory alive.
class conn_responder final : public responder {
public:
  explicit conn_responder(std::weak_ptr<connection> c) : conn_(std::move(c)) {}
  ~conn_responder() override {
    if (sent_.load(std::memory_order_acquire))
      return;
    try {
      send(problem(503, "urn:sessiond:problem:unavailable", "Service Unavailable",
                   "the request was dropped before an answer was produced"));
    } catch (...) {
      // Out of memory while building the 503: the connection closes at its timeout.
    }
  }
  void send(response&& r) override {
    if (sent_.exchange(true, std::memory_order_acq_rel))
      return;
    if (auto c = conn_.lock())
      c->deliver(std::move(r));
  }

private:
  std::weak_ptr<connection> conn_;
  std::atomic<bool> sent_{false};
};

// ---- listener ---------------------------------------------------------------------------

listener::listener(std::vector<asio::io_context*> loops, server_options opts, handler h)
    : opts_(std::move(opts)),
      handler_(std::move(h)),
      tick_(std::max<steady::duration>(std::min(opts_.header_timeout, opts_.idle_timeout),
                                       std::chrono::milliseconds(1))),
      loops_(std::move(loops)),
      acceptor_(*loops_.front()),
      accept_retry_(*loops_.front()) {}

void listener::fail(const error_code& ec, const char* what) {
  error_code ignored;
  acceptor_.close(ignored);
  throw std::system_error(static_cast<std::error_code>(ec), std::string("http: ") + what + " " +
                                                                opts_.address + ":" +
                                                                std::to_string(opts_.port));
}

std::uint16_t listener::bind() {
  std::lock_guard<std::mutex> lock(mu_);
  if (acceptor_.is_open() || draining_)
    throw std::logic_error("http: server bound twice");
  error_code ec;
  auto addr = asio::ip::make_address(opts_.address, ec);
  if (ec)
    fail(ec, "invalid listen address");
  tcp::endpoint ep(addr, opts_.port);
  acceptor_.open(ep.protocol(), ec);
  if (ec)
    fail(ec, "cannot open a socket for");
  acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
  acceptor_.bind(ep, ec);
  if (ec)
    fail(ec, "cannot bind");
  bound_port_ = acceptor_.local_endpoint(ec).port();
  if (ec)
    fail(ec, "cannot read the bound port of");
  return bound_port_;
}

std::uint16_t listener::start() {
  bool bound = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (accepting_ || draining_)
      throw std::logic_error("http: server started twice");
    bound = acceptor_.is_open();
  }
  if (!bound)
    bind();
  std::lock_guard<std::mutex> lock(mu_);
  error_code ec;
  acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    fail(ec, "cannot listen on");
  accepting_ = true;
  accept_next();
  return bound_port_;
}

void listener::accept_next() {
  auto& loop = *loops_[next_loop_++ % loops_.size()];
  acceptor_.async_accept(asio::make_strand(loop),
                         [self = shared_from_this()](error_code ec, socket_t socket) {
                           self->on_accept(ec, std::move(socket));
                         });
}

void listener::on_accept(error_code ec, socket_t socket) {
  if (!ec)
    admit(std::move(socket));
  std::lock_guard<std::mutex> lock(mu_);
  if (!accepting_)
    return;
  if (!ec || ec == asio::error::connection_aborted)
    return accept_next();
  // Out of descriptors or memory: retrying at once would spin, so pause a little.
  accept_retry_.expires_after(std::chrono::milliseconds(50));
  accept_retry_.async_wait([self = shared_from_this()](error_code wait_ec) {
    std::lock_guard<std::mutex> relock(self->mu_);
    if (!wait_ec && self->accepting_)
      self->accept_next();
  });
}

void listener::admit(socket_t socket) {
  accepted_.fetch_add(1, std::memory_order_relaxed);
  if (open_.load(std::memory_order_relaxed) >= opts_.max_connections) {
    refused_.fetch_add(1, std::memory_order_relaxed);
    // Best effort: a short 503 if the send buffer takes it at once, then close.
    static constexpr std::string_view busy =
        "HTTP/1.1 503 Service Unavailable\r\nServer: sessiond\r\nContent-Length: 0\r\n"
        "Connection: close\r\n\r\n";
    error_code ec;
    socket.non_blocking(true, ec);
    socket.write_some(asio::buffer(busy.data(), busy.size()), ec);
    socket.close(ec);
    return;
  }
  open_.fetch_add(1, std::memory_order_relaxed);
  auto c = std::make_shared<connection>(shared_from_this(), std::move(socket));
  {
    std::lock_guard<std::mutex> lock(mu_);
    conns_.push_front(c.get());
    c->set_registration(conns_.begin());
  }
  asio::post(c->strand(), [c] { c->start(); });
}

void listener::stop(bool force) {
  std::vector<std::shared_ptr<connection>> live;
  {
    std::lock_guard<std::mutex> lock(mu_);
    draining_ = true;
    if (force)
      closed_ = true;
    accepting_ = false;
    error_code ec;
    acceptor_.close(ec);
    accept_retry_.cancel();
    live.reserve(conns_.size());
    // A connection whose destructor waits on mu_ yields an empty lock() and is skipped.
    for (auto* c : conns_)
      if (auto sp = c->weak_from_this().lock())
        live.push_back(std::move(sp));
  }
  for (auto& c : live)
    asio::post(c->strand(), [c, force] { force ? c->close() : c->drain(); });
}

void listener::unregister(std::list<connection*>::iterator it) {
  std::lock_guard<std::mutex> lock(mu_);
  conns_.erase(it);
}

// ---- connection: reading ---------------------------------------------------------------

connection::connection(std::shared_ptr<listener> owner, socket_t socket)
    : owner_(std::move(owner)),
      strand_(socket.get_executor()),
      socket_(std::move(socket)),
      timer_(strand_) {}

connection::~connection() {
  release_counts();
  owner_->unregister(reg_);
}

void connection::start() {
  error_code ec;
  socket_.set_option(tcp::no_delay(true), ec);
  // Writes are tried synchronously first (see write()); would_block falls back to async.
  socket_.non_blocking(true, ec);
  auto peer = socket_.remote_endpoint(ec);
  if (!ec) {
    auto addr = peer.address();
    if (addr.is_v6() && addr.to_v6().is_v4_mapped()) // a dual-stack listener's IPv4 clients
      addr = asio::ip::make_address_v4(asio::ip::v4_mapped, addr.to_v6());
    remote_address_ = addr.to_string();
  }
  new_parser();
  set_deadline(owner_->opts_.header_timeout);
  arm_timer(std::min(deadline_, steady::now() + owner_->tick_)); // see on_timer()
  if (owner_->draining_.load())
    return close();
  read_more();
}

void connection::new_parser() {
  parser_.emplace();
  parser_->eager(true);
  parser_->header_limit(static_cast<std::uint32_t>(
      std::min<std::size_t>(owner_->opts_.max_header_bytes, UINT32_MAX)));
  parser_->body_limit(static_cast<std::uint64_t>(owner_->opts_.max_body_bytes));
}

void connection::read_more() {
  std::size_t want = read_chunk_bytes;
  if (parser_->is_header_done()) {
    if (auto rest = parser_->content_length_remaining())
      want = static_cast<std::size_t>(
          std::clamp<std::uint64_t>(*rest, read_chunk_bytes, max_read_chunk_bytes));
  }
  socket_.async_read_some(
      buffer_.prepare(want),
      [self = shared_from_this()](error_code ec, std::size_t n) { self->on_read(ec, n); });
}

void connection::on_read(error_code ec, std::size_t n) {
  if (phase_ == phase::closed)
    return;
  if (ec) {
    // Requests never end at EOF, so EOF inside one means it was cut short.
    if (phase_ == phase::reading)
      owner_->rejected_.fetch_add(1, std::memory_order_relaxed);
    return close();
  }
  buffer_.commit(n);
  if (phase_ == phase::waiting) {
    phase_ = phase::reading;
    if (!first_)
      set_deadline(owner_->opts_.header_timeout);
  }
  parse();
}

void connection::parse() {
  auto& p = *parser_;
  for (;;) {
    if (buffer_.size() == 0)
      break;
    error_code ec;
    std::size_t used = p.put(buffer_.data(), ec);
    buffer_.consume(used);
    if (ec == bhttp::error::need_more)
      break;
    if (ec)
      return reject(ec);
    if (p.is_done())
      return dispatch();
    if (used == 0)
      break;
  }
  if (p.expect_continue && !p.continue_sent && p.version >= 11 && p.is_header_done())
    send_continue();
  read_more();
}

void connection::send_continue() {
  // Nothing else is being written while a request is read, so the socket buffer is empty
  // and 25 bytes go out at once; a failure surfaces on the next read.
  parser_->continue_sent = true;
  error_code ec;
  socket_.write_some(asio::buffer(continue_line.data(), continue_line.size()), ec);
}

void connection::dispatch() {
  auto& p = *parser_;
  keep_alive_ = p.keep_alive();
  http10_ = p.version < 11;
  head_only_ = p.req.verb == method::head;
  linger_ = false;
  phase_ = phase::handling;
  first_ = false;
  owner_->requests_.fetch_add(1, std::memory_order_relaxed);
  if (owner_->closed_.load(std::memory_order_relaxed))
    return close();
  pending_ = true;
  owner_->in_flight_.fetch_add(1, std::memory_order_relaxed);
  p.req.remote_address = remote_address_;
  // Keep a reference for the catch: a handler may answer inline, on this very stack,
  // so nothing below the call touches the connection's state.
  responder_ptr r = std::make_shared<conn_responder>(weak_from_this());
  try {
    owner_->handler_(std::move(p.req), r);
  } catch (const std::exception& e) {
    r->send(problem(500, "urn:sessiond:problem:internal", "Internal Server Error", e.what()));
  } catch (...) {
    r->send(problem(500, "urn:sessiond:problem:internal", "Internal Server Error",
                    "unexpected exception"));
  }
}

void connection::reject(error_code ec) {
  owner_->rejected_.fetch_add(1, std::memory_order_relaxed);
  keep_alive_ = false;
  http10_ = false;
  head_only_ = false;
  linger_ = true;
  phase_ = phase::handling;
  if (ec == bhttp::error::body_limit)
    return write_response(problem(
        413, "urn:sessiond:problem:payload-too-large", "Content Too Large",
        "the request body exceeds " + std::to_string(owner_->opts_.max_body_bytes) + " bytes"));
  if (ec == bhttp::error::header_limit)
    return write_response(problem(
        431, "urn:sessiond:problem:header-too-large", "Request Header Fields Too Large",
        "the request header exceeds " + std::to_string(owner_->opts_.max_header_bytes) + " bytes"));
  write_response(problem(400, "urn:sessiond:problem:bad-request", "Bad Request",
                         "malformed HTTP request: " + ec.message()));
}

// ---- connection: writing ---------------------------------------------------------------

void connection::deliver(response&& r) {
  if (strand_.running_in_this_thread())
    return write_response(std::move(r));
  // On the connection's own loop thread (the Redis reply of an op that stayed on that thread),
  // dispatch writes at once unless the strand is busy; from elsewhere it queues like post.
  asio::dispatch(strand_, [self = shared_from_this(), r = std::move(r)]() mutable {
    self->write_response(std::move(r));
  });
}

void connection::write_response(response&& r) {
  if (phase_ != phase::handling)
    return; // closed meanwhile: in_flight_ already released
  if (r.status < 200 || r.status > 599)
    r.status = 500; // a final answer is required: interim (1xx) or invalid codes are bugs
  out_.emplace(std::move(r));
  close_after_ = !keep_alive_ || owner_->draining_.load();
  bool with_body = out_->status != 204 && out_->status != 304;
  render_head(*out_, with_body);
  if (!with_body || head_only_)
    out_->body.clear();
  phase_ = phase::writing;
  // A client must take its response within idle_timeout (a reader that never reads).
  set_deadline(owner_->opts_.idle_timeout);
  write();
}

void connection::render_head(const response& r, bool with_body) {
  head_.clear();
  head_.append("HTTP/1.1 ");
  append_uint(head_, r.status);
  head_.push_back(' ');
  head_.append(reason(r.status));
  head_.append("\r\nServer: sessiond\r\n");
  if (with_body) {
    if (!r.content_type.empty() && header_safe(r.content_type)) {
      head_.append("Content-Type: ").append(r.content_type).append("\r\n");
    }
    head_.append("Content-Length: ");
    append_uint(head_, r.body.size());
    head_.append("\r\n");
  }
  for (const auto& [name, value] : r.headers) {
    if (name.empty() || !header_safe(name) || !header_safe(value))
      continue;
    head_.append(name).append(": ").append(value).append("\r\n");
  }
  if (close_after_) {
    head_.append("Connection: close\r\n");
  } else if (http10_) {
    head_.append("Connection: keep-alive\r\n");
  }
  head_.append("\r\n");
}

void connection::write() {
  // Try the write at once: a response nearly always fits the socket buffer, which saves
  // the completion round trip through the scheduler.
  std::array<asio::const_buffer, 2> bufs{asio::buffer(head_), asio::buffer(out_->body)};
  const std::size_t total = head_.size() + out_->body.size();
  error_code ec;
  std::size_t n = socket_.write_some(bufs, ec);
  if (!ec && n == total)
    return on_written(ec);
  if (ec && ec != asio::error::would_block && ec != asio::error::try_again)
    return on_written(ec);
  if (ec)
    n = 0;
  bufs[0] = asio::buffer(head_) + n;
  bufs[1] = asio::buffer(out_->body) + (n > head_.size() ? n - head_.size() : 0);
  asio::async_write(socket_, bufs, [self = shared_from_this()](error_code wec, std::size_t) {
    if (self->phase_ == phase::writing)
      self->on_written(wec);
  });
}

void connection::on_written(error_code ec) {
  if (pending_) {
    pending_ = false;
    owner_->in_flight_.fetch_sub(1, std::memory_order_relaxed);
  }
  out_.reset();
  if (ec)
    return close();
  if (linger_)
    return start_linger();
  if (close_after_)
    return close();
  // Pipelined bytes already buffered: continue from a fresh stack, not recursively.
  if (buffer_.size() > 0) {
    phase_ = phase::reading;
    return asio::post(strand_, [self = shared_from_this()] { self->next_request(); });
  }
  next_request();
}

void connection::next_request() {
  if (phase_ == phase::closed)
    return;
  if (owner_->draining_.load())
    return close();
  new_parser();
  if (buffer_.size() > 0) {
    phase_ = phase::reading;
    set_deadline(owner_->opts_.header_timeout);
    return parse();
  }
  phase_ = phase::waiting;
  set_deadline(owner_->opts_.idle_timeout);
  read_more();
}

// ---- connection: closing and timers ----------------------------------------------------

void connection::start_linger() {
  // Closing with unread input makes the kernel send RST, which can destroy the error
  // answer before the client reads it; so stop sending, then discard input for a while.
  error_code ec;
  socket_.shutdown(tcp::socket::shutdown_send, ec);
  if (ec)
    return close();
  phase_ = phase::lingering;
  buffer_.clear();
  deadline_ = steady::now() + std::min<steady::duration>(owner_->opts_.header_timeout, linger_max);
  arm_timer(deadline_);
  linger_read();
}

void connection::linger_read() {
  socket_.async_read_some(buffer_.prepare(read_chunk_bytes),
                          [self = shared_from_this()](error_code ec, std::size_t n) {
                            if (self->phase_ != phase::lingering)
                              return;
                            self->lingered_bytes_ += n;
                            if (ec || self->lingered_bytes_ > linger_max_bytes)
                              return self->close();
                            self->linger_read();
                          });
}

void connection::drain() {
  // Idle between requests (or before the first one): nothing is owed, close now. Otherwise
  // the request in progress is answered with Connection: close.
  if (phase_ == phase::waiting)
    close();
}

void connection::close() {
  if (phase_ == phase::closed)
    return;
  phase_ = phase::closed;
  error_code ec;
  socket_.shutdown(tcp::socket::shutdown_both, ec);
  socket_.close(ec);
  timer_.cancel();
  release_counts();
}

void connection::release_counts() {
  if (pending_) {
    pending_ = false;
    owner_->in_flight_.fetch_sub(1, std::memory_order_relaxed);
  }
  if (counted_open_) {
    counted_open_ = false;
    owner_->open_.fetch_sub(1, std::memory_order_relaxed);
  }
}

void connection::arm_timer(steady::time_point at) {
  timer_.expires_at(at); // cancels a pending wait, whose handler then sees an error
  timer_.async_wait([self = shared_from_this()](error_code ec) { self->on_timer(ec); });
}

// Deadlines move per request without touching the timer: it wakes at most every tick_ and
// re-arms for min(deadline_, now + tick_). Every deadline is at least tick_ away when set,
// so the timer is never late. While the handler works there is no deadline, only the tick.
void connection::on_timer(error_code ec) {
  if (ec || phase_ == phase::closed)
    return;
  auto now = steady::now();
  bool timed = phase_ != phase::handling;
  if (timed && now >= deadline_) {
    // Cut off mid-request (slowloris or a stalled body): closed without an answer.
    if (phase_ == phase::reading)
      owner_->rejected_.fetch_add(1, std::memory_order_relaxed);
    return close();
  }
  auto next = now + owner_->tick_;
  if (timed && deadline_ < next)
    next = deadline_;
  arm_timer(next);
}

} // namespace

// ---- server ----------------------------------------------------------------------------

struct server::impl : listener {
  using listener::listener;
};

server::server(boost::asio::io_context& io, server_options opts, handler h)
    : server(std::vector<boost::asio::io_context*>{&io}, std::move(opts), std::move(h)) {}

server::server(const std::vector<boost::asio::io_context*>& loops, server_options opts, handler h) {
  if (loops.empty())
    throw std::invalid_argument("http: server needs at least one io_context");
  impl_ = std::make_shared<impl>(loops, std::move(opts), std::move(h));
}

server::~server() {
  impl_->stop(true);
}

std::uint16_t server::bind() {
  return impl_->bind();
}

std::uint16_t server::start() {
  return impl_->start();
}

void server::stop_accepting() {
  impl_->stop(false);
}

std::size_t server::in_flight() const {
  return impl_->in_flight_.load();
}

server_stats server::stats() const {
  server_stats s;
  s.connections_accepted = impl_->accepted_.load(std::memory_order_relaxed);
  s.connections_open = impl_->open_.load(std::memory_order_relaxed);
  s.requests = impl_->requests_.load(std::memory_order_relaxed);
  s.rejected_bad_request = impl_->rejected_.load(std::memory_order_relaxed);
  s.connections_rejected = impl_->refused_.load(std::memory_order_relaxed);
  return s;
}

} // namespace sessiond::http
