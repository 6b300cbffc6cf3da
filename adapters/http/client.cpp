// HTTP/1.1 client on Asio and Beast's response parser: per-host keep-alive pools with a FIFO
// wait queue, one strand per connection, one deadline timer per request, verified TLS.
// URL parsing and the error names are in client_url.cpp. Past 800 lines still: the connection
// (connect, TLS, write, read, reuse, deadline) is one state machine on one strand, kept together.
#include "adapters/http/client.hpp"

#include "model/text.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <list>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <unordered_map>

namespace sessiond::http {

namespace {

using model::iequals;

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;
using steady = std::chrono::steady_clock;
using strand_t = asio::strand<asio::io_context::executor_type>;
using socket_t = tcp::socket::rebind_executor<strand_t>::other;
using resolver_t = tcp::resolver::rebind_executor<strand_t>::other;
using strand_timer = asio::basic_waitable_timer<steady, asio::wait_traits<steady>, strand_t>;
using tls_stream = ssl::stream<socket_t&>;
using callback = std::function<void(incoming_response&&)>;

constexpr std::size_t read_chunk_bytes = 4096;
constexpr std::size_t max_read_chunk_bytes = 64 << 10;
constexpr std::uint32_t max_header_bytes = 64 << 10;

bool fail(std::string& error, std::string what) {
  error = std::move(what);
  return false;
}

// ---- rendering a request -------------------------------------------------------------------

bool is_token(std::string_view s) {
  static constexpr std::string_view extra = "!#$%&'*+-.^_`|~";
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || extra.find(c) != std::string_view::npos;
  });
}

bool header_value_ok(std::string_view v) {
  return v.find_first_of(std::string_view("\r\n\0", 3)) == std::string_view::npos;
}

/// Headers that decide framing and routing: the client writes them itself.
bool reserved_header(std::string_view name) {
  for (std::string_view r :
       {"Host", "Content-Length", "Content-Type", "Transfer-Encoding", "Connection"})
    if (iequals(name, r))
      return true;
  return false;
}

bool expects_body(std::string_view method) {
  return method == "POST" || method == "PUT" || method == "PATCH";
}

/// host:port as written in messages and pool keys; an IPv6 host in brackets.
std::string address_of(const parsed_url& u) {
  bool v6 = u.host.find(':') != std::string::npos;
  return (v6 ? "[" + u.host + "]" : u.host) + ":" + std::to_string(u.port);
}

std::string host_header(const parsed_url& u) {
  if (u.port != (u.tls ? 443 : 80))
    return address_of(u);
  return u.host.find(':') != std::string::npos ? "[" + u.host + "]" : u.host;
}

void append_header(std::string& head, std::string_view name, std::string_view value) {
  head.append(name).append(": ").append(value).append("\r\n");
}

/// Request line and header section; false with `error` for what cannot be sent.
bool render_head(const outgoing_request& req, const parsed_url& u, const client_options& o,
                 std::string& head, std::string& error) {
  if (!is_token(req.method))
    return fail(error, "the method is not an HTTP token");
  if (!header_value_ok(req.content_type))
    return fail(error, "content_type has CR, LF or NUL");
  bool own_agent = true, own_auth = true;
  for (const auto& [name, value] : req.headers) {
    if (!is_token(name))
      return fail(error, "a header name is not an HTTP token");
    if (!header_value_ok(value))
      return fail(error, "the value of header " + name + " has CR, LF or NUL");
    if (reserved_header(name))
      return fail(error, "header " + name + " is set by the client itself");
    own_agent = own_agent && !iequals(name, "User-Agent");
    own_auth = own_auth && !iequals(name, "Authorization");
  }
  head.reserve(256 + req.headers.size() * 64);
  head.append(req.method).append(" ").append(u.target).append(" HTTP/1.1\r\n");
  append_header(head, "Host", host_header(u));
  if (own_agent && !o.user_agent.empty())
    append_header(head, "User-Agent", o.user_agent);
  if (own_auth && !u.authorization.empty())
    append_header(head, "Authorization", u.authorization);
  if (!req.body.empty() && !req.content_type.empty())
    append_header(head, "Content-Type", req.content_type);
  if (!req.body.empty() || expects_body(req.method))
    append_header(head, "Content-Length", std::to_string(req.body.size()));
  for (const auto& [name, value] : req.headers)
    append_header(head, name, value);
  head.append("\r\n");
  return true;
}

class connection;

/// One request from request() to its callback. `done` runs once (guarded by `finished`); the
/// fields marked mu_ are guarded by client_state::mu_, `retried` by the connection running it.
struct pending {
  explicit pending(asio::io_context& io) : deadline_timer(io) {}
  std::string key; ///< its pool: scheme://host:port
  parsed_url url;
  std::string head;
  std::string body;
  bool head_only = false; ///< HEAD: the response has no body, whatever it announces
  std::chrono::milliseconds timeout{0};
  callback done;
  asio::steady_timer deadline_timer; ///< on the io_context; armed under mu_
  std::atomic<bool> finished{false};
  bool retried = false;
  bool queued = false;                                     ///< mu_
  std::list<std::shared_ptr<pending>>::iterator queue_pos; ///< mu_, while queued
  std::weak_ptr<connection> conn;                          ///< mu_, once assigned
};
using pending_ptr = std::shared_ptr<pending>;

struct host_pool {
  std::size_t connections = 0;                   ///< connecting, busy or idle
  std::vector<std::shared_ptr<connection>> idle; ///< most recently used last
  std::list<pending_ptr> waiting;                ///< FIFO
};

/// The TLS context shared by all connections: the peer's certificate must chain to
/// `tls_ca_file` (or the system's CAs); the host name is set per connection. Throws.
ssl::context make_tls_context(const client_options& o) {
  ssl::context ctx(ssl::context::tls_client);
  SSL_CTX_set_min_proto_version(ctx.native_handle(), TLS1_2_VERSION);
  error_code ec;
  if (o.tls_ca_file.empty()) {
    ctx.set_default_verify_paths(ec);
  } else {
    if (!std::ifstream(o.tls_ca_file))
      throw std::runtime_error("http: cannot read the TLS CA file " + o.tls_ca_file + ": " +
                               std::strerror(errno));
    ctx.load_verify_file(o.tls_ca_file, ec);
  }
  if (ec)
    throw std::runtime_error(
        "http: cannot load the TLS CA certificates" +
        (o.tls_ca_file.empty() ? std::string(" of the system") : " from " + o.tls_ca_file) + ": " +
        ec.message());
  ctx.set_verify_mode(ssl::verify_peer);
  return ctx;
}

/// Pools, the wait queue and counters, shared by the client and its connections (which keep
/// it alive after ~client). mu_ is held only to move requests and connections between them.
class client_state : public std::enable_shared_from_this<client_state> {
public:
  client_state(asio::io_context& io, client_options opts);

  /// From any thread: run `p` on an idle or new connection, queue it, or fail it.
  void submit(const pending_ptr& p);
  /// Runs the callback once; on an io thread.
  void complete(const pending_ptr& p, incoming_response&& r);
  /// complete() posted to the io_context, for callers that may not be on an io thread.
  void complete_later(pending_ptr p, client_errc e, std::string detail);
  void stop();

  // From a connection's strand:
  /// `c` finished a reusable exchange: the next waiting request for it, or null when it went
  /// idle (`idle_gen` set) or must close (`idle_gen` 0, the client stopped).
  pending_ptr release(connection& c, std::uint64_t& idle_gen);
  /// `c` closed: its slot goes to the first waiting request, on a new connection.
  void closed(connection& c);
  /// `dead` closed under `p` before any response byte: `p` gets a new connection in its slot.
  void retry(connection& dead, pending_ptr p);
  /// True when `c` was still idle in its pool as of `gen`, and is now out of it.
  bool take_idle(connection& c, std::uint64_t gen);

  asio::io_context& io_;
  const client_options opts_;
  ssl::context tls_;
  std::atomic<bool> stopped_{false};
  std::atomic<std::uint64_t> requests_{0}, failures_{0}, opened_{0}, reused_{0};

private:
  void on_deadline(const pending_ptr& p);
  void arm_deadline(const pending_ptr& p);
  std::shared_ptr<connection> take_connection(host_pool& pool, const pending& p);
  std::shared_ptr<connection> open(const pending& p);
  pending_ptr pop_waiting(host_pool& pool);
  void forget_if_empty(const std::string& key);

  std::mutex mu_;
  std::unordered_map<std::string, host_pool> pools_;
  std::list<std::weak_ptr<connection>> live_; ///< every connection not closed yet, for stop()
  std::size_t queued_ = 0;
};

/// One connection to one host:port, used by one request at a time. Everything but the mu_
/// fields runs on its strand. Once closed it is never used again.
class connection final : public std::enable_shared_from_this<connection> {
public:
  connection(std::shared_ptr<client_state> st, const pending& first);

  const strand_t& strand() const { return strand_; }
  const std::string& key() const { return key_; }
  /// Starts `p`: on the open connection, or after resolve, connect and TLS.
  void run(pending_ptr p);
  void on_deadline(const pending_ptr& p);
  /// stop(): fails the current request with closed and closes.
  void abort();

  bool in_pool_ = false;                                    ///< mu_
  std::uint64_t idle_gen_ = 0;                              ///< mu_: bumped each time it goes idle
  std::list<std::weak_ptr<connection>>::iterator live_pos_; ///< mu_

private:
  enum class phase { fresh, resolving, connecting, handshaking, exchanging, idle, closed };

  void resolve();
  void connect(const std::vector<tcp::endpoint>& eps);
  void handshake();
  void start_exchange();
  void write();
  void on_written(error_code ec, const pending_ptr& p);
  void read_more();
  void on_read(error_code ec, std::size_t n);
  void on_eof();
  void parse();
  void on_message();
  void bad_message(error_code ec);
  void lost(error_code ec);
  void finish(incoming_response&& r, bool reusable);
  void fail(client_errc e, std::string detail);
  void go_idle(std::uint64_t gen);
  void idle_end(std::uint64_t gen);
  void new_parser();
  std::string doing() const;
  std::string tls_error(error_code ec) const;
  bool shut();
  void close();

  std::shared_ptr<client_state> st_;
  strand_t strand_;
  socket_t socket_;
  resolver_t resolver_;
  strand_timer idle_timer_;
  std::unique_ptr<tls_stream> tls_;
  const std::string key_, host_, address_;
  const std::uint16_t port_;
  const bool use_tls_;
  pending_ptr current_;
  std::optional<bhttp::response_parser<bhttp::string_body>> parser_;
  boost::beast::flat_buffer buffer_;
  phase phase_ = phase::fresh;
  bool reused_ = false;    ///< the current request runs on a kept-alive connection
  bool got_bytes_ = false; ///< of the current response
  bool writing_ = false;
};

// ---- connection: connecting ---------------------------------------------------------------

connection::connection(std::shared_ptr<client_state> st, const pending& first)
    : st_(std::move(st)),
      strand_(asio::make_strand(st_->io_)),
      socket_(strand_),
      resolver_(strand_),
      idle_timer_(strand_),
      key_(first.key),
      host_(first.url.host),
      address_(address_of(first.url)),
      port_(first.url.port),
      use_tls_(first.url.tls) {}

void connection::run(pending_ptr p) {
  current_ = std::move(p);
  got_bytes_ = false;
  if (phase_ == phase::closed || st_->stopped_.load())
    return fail(client_errc::closed, "the client was stopped");
  if (phase_ != phase::idle)
    return resolve();
  reused_ = true;
  st_->reused_.fetch_add(1, std::memory_order_relaxed);
  error_code ignored;
  idle_timer_.cancel();
  socket_.cancel(ignored); // the idle watch
  start_exchange();
}

void connection::resolve() {
  phase_ = phase::resolving;
  error_code ec;
  auto addr = asio::ip::make_address(host_, ec);
  if (!ec)
    return connect({tcp::endpoint(addr, port_)});
  resolver_.async_resolve(
      host_, std::to_string(port_),
      [self = shared_from_this()](error_code rec, const tcp::resolver::results_type& r) {
        if (self->phase_ != phase::resolving)
          return;
        if (rec)
          return self->fail(client_errc::resolve_failed,
                            "resolve " + self->host_ + ": " + rec.message());
        self->connect({r.begin(), r.end()});
      });
}

void connection::connect(const std::vector<tcp::endpoint>& eps) {
  phase_ = phase::connecting;
  asio::async_connect(socket_, eps, [self = shared_from_this()](error_code ec, const auto&) {
    if (self->phase_ != phase::connecting)
      return;
    if (ec)
      return self->fail(client_errc::connect_failed,
                        "connect to " + self->address_ + ": " + ec.message());
    self->st_->opened_.fetch_add(1, std::memory_order_relaxed);
    error_code ignored;
    self->socket_.set_option(tcp::no_delay(true), ignored);
    self->use_tls_ ? self->handshake() : self->start_exchange();
  });
}

void connection::handshake() {
  phase_ = phase::handshaking;
  tls_ = std::make_unique<tls_stream>(socket_, st_->tls_);
  SSL* ssl = tls_->native_handle();
  error_code ec;
  asio::ip::make_address(host_, ec);
  bool ok = false;
  if (!ec) { // an IP address: no SNI (RFC 6066), the certificate must name the IP
    ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host_.c_str()) == 1;
  } else {
    // OpenSSL checks the name during the handshake, so a mismatch fails it with a reason
    // ("hostname mismatch") the detail can name.
    SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    ok = SSL_set_tlsext_host_name(ssl, host_.c_str()) == 1 && SSL_set1_host(ssl, host_.c_str());
  }
  if (!ok)
    return fail(client_errc::tls_failed, "cannot set up TLS for " + address_);
  tls_->async_handshake(ssl::stream_base::client, [self = shared_from_this()](error_code hec) {
    if (self->phase_ != phase::handshaking)
      return;
    if (hec)
      return self->fail(client_errc::tls_failed,
                        "TLS handshake with " + self->address_ + ": " + self->tls_error(hec));
    self->start_exchange();
  });
}

std::string connection::tls_error(error_code ec) const {
  std::string why = ec.message();
  long verify = SSL_get_verify_result(tls_->native_handle());
  if (verify != X509_V_OK)
    why += std::string(" (") + X509_verify_cert_error_string(verify) + ")";
  return why;
}

// ---- connection: one exchange -------------------------------------------------------------

void connection::new_parser() {
  parser_.emplace();
  // Not eager: Beast 1.74's response parser, when eager, parses on past a Content-Length over
  // body_limit and forgets the error; one put() per part keeps the limit.
  parser_->eager(false);
  parser_->header_limit(max_header_bytes);
  parser_->body_limit(static_cast<std::uint64_t>(st_->opts_.max_response_bytes));
  parser_->skip(current_->head_only);
}

/// The request is written while the response is read: a server may answer (413) and close
/// before taking the whole body, and that answer is what the caller needs.
void connection::start_exchange() {
  phase_ = phase::exchanging;
  new_parser();
  writing_ = true;
  write();
  read_more();
}

void connection::write() {
  std::array<asio::const_buffer, 2> bufs{asio::buffer(current_->head),
                                         asio::buffer(current_->body)};
  // The handler holds the request: its buffers must outlive a write cut short by close().
  auto done = [self = shared_from_this(), p = current_](error_code ec, std::size_t) {
    self->on_written(ec, p);
  };
  if (tls_)
    asio::async_write(*tls_, bufs, std::move(done));
  else
    asio::async_write(socket_, bufs, std::move(done));
}

void connection::on_written(error_code ec, const pending_ptr& p) {
  if (phase_ != phase::exchanging || current_ != p)
    return;
  // With response bytes in, the read says how it ends; without, the peer is gone. Either
  // way writing_ stays set, so the connection is not kept.
  if (ec) {
    if (!got_bytes_)
      lost(ec);
    return;
  }
  writing_ = false;
}

void connection::read_more() {
  std::size_t want = read_chunk_bytes;
  if (parser_->is_header_done())
    if (auto rest = parser_->content_length_remaining())
      want = static_cast<std::size_t>(
          std::clamp<std::uint64_t>(*rest, read_chunk_bytes, max_read_chunk_bytes));
  auto done = [self = shared_from_this()](error_code ec, std::size_t n) { self->on_read(ec, n); };
  if (tls_)
    tls_->async_read_some(buffer_.prepare(want), std::move(done));
  else
    socket_.async_read_some(buffer_.prepare(want), std::move(done));
}

void connection::on_read(error_code ec, std::size_t n) {
  if (phase_ != phase::exchanging)
    return;
  buffer_.commit(n);
  got_bytes_ = got_bytes_ || n > 0;
  // Many servers close TLS without close_notify; the parser decides whether that cut a body.
  if (ec == asio::error::eof || ec == ssl::error::stream_truncated)
    return on_eof();
  if (ec)
    return lost(ec);
  parse();
}

void connection::on_eof() {
  if (!got_bytes_)
    return lost(asio::error::eof);
  error_code ec;
  parser_->put_eof(ec);
  if (!ec && parser_->is_done())
    return on_message();
  fail(client_errc::connection_lost, "the response from " + address_ + " ended early");
}

void connection::parse() {
  while (buffer_.size() > 0) {
    error_code ec;
    std::size_t used = parser_->put(buffer_.data(), ec);
    buffer_.consume(used);
    if (ec == bhttp::error::need_more)
      break;
    if (ec)
      return bad_message(ec);
    if (parser_->is_done())
      return on_message();
    if (used == 0)
      break;
  }
  read_more();
}

void connection::bad_message(error_code ec) {
  if (ec == bhttp::error::body_limit)
    return fail(client_errc::response_too_large,
                "the response body from " + address_ + " is over " +
                    std::to_string(st_->opts_.max_response_bytes) + " bytes");
  if (ec == bhttp::error::header_limit)
    return fail(client_errc::response_too_large, "the response header from " + address_ +
                                                     " is over " +
                                                     std::to_string(max_header_bytes) + " bytes");
  fail(client_errc::protocol, "bad HTTP response from " + address_ + ": " + ec.message());
}

void connection::on_message() {
  auto& msg = parser_->get();
  unsigned status = msg.result_int();
  if (status == 101)
    return fail(client_errc::protocol, "unexpected 101 Switching Protocols from " + address_);
  if (status < 200) { // interim (100 Continue, 103 Early Hints): the final answer follows
    new_parser();
    return parse();
  }
  incoming_response r;
  r.status = status;
  auto ct = msg[bhttp::field::content_type];
  r.content_type.assign(ct.data(), ct.size());
  r.body = std::move(msg.body());
  // Bytes after the response were never asked for: such a peer is not trusted with another.
  bool reusable = parser_->keep_alive() && !writing_ && buffer_.size() == 0 &&
                  st_->opts_.idle_timeout.count() > 0;
  finish(std::move(r), reusable);
}

/// The connection broke (or closed) under the current request.
void connection::lost(error_code ec) {
  // A kept-alive connection the server closed while idle (or closes as we reuse it) fails
  // before any response byte: the server did not answer, so one retry on a new connection is
  // the usual client behaviour. The server may rarely have read the request; Idempotency-Key
  // lets it notice the repeat.
  if (reused_ && !got_bytes_ && !current_->retried && !st_->stopped_.load()) {
    auto p = std::move(current_);
    p->retried = true;
    shut();
    return st_->retry(*this, std::move(p));
  }
  std::string what = got_bytes_ ? "reading the response from " : "waiting for a response from ";
  fail(client_errc::connection_lost,
       "connection lost " + what + address_ + ": " +
           (ec == asio::error::eof ? std::string("closed by the server") : ec.message()));
}

void connection::finish(incoming_response&& r, bool reusable) {
  auto p = std::move(current_);
  parser_.reset();
  pending_ptr next;
  std::uint64_t gen = 0;
  if (reusable) {
    phase_ = phase::idle;
    next = st_->release(*this, gen);
  }
  if (!next && gen == 0)
    close();
  else if (!next)
    go_idle(gen);
  st_->complete(p, std::move(r));
  if (next)
    run(std::move(next));
}

void connection::fail(client_errc e, std::string detail) {
  auto p = std::move(current_);
  close();
  if (!p)
    return;
  incoming_response r;
  r.error = e;
  r.detail = std::move(detail);
  st_->complete(p, std::move(r));
}

std::string connection::doing() const {
  switch (phase_) {
  case phase::resolving:
    return "resolving " + host_;
  case phase::connecting:
    return "connecting to " + address_;
  case phase::handshaking:
    return "in the TLS handshake with " + address_;
  default:
    break;
  }
  if (got_bytes_)
    return "reading the response from " + address_;
  return (writing_ ? "sending the request to " : "waiting for the response from ") + address_;
}

void connection::on_deadline(const pending_ptr& p) {
  if (current_ != p || phase_ == phase::closed)
    return;
  fail(client_errc::timeout,
       "timeout after " + std::to_string(p->timeout.count()) + " ms " + doing());
}

void connection::abort() {
  fail(client_errc::closed, "the client was stopped");
}

// ---- connection: idle and closing ---------------------------------------------------------

/// Waits for the idle timeout, and for the socket to turn readable: a server closing a
/// kept-alive connection is noticed then, not when the next request runs into it.
void connection::go_idle(std::uint64_t gen) {
  idle_timer_.expires_after(st_->opts_.idle_timeout);
  idle_timer_.async_wait([self = shared_from_this(), gen](error_code ec) {
    if (!ec)
      self->idle_end(gen);
  });
  socket_.async_wait(tcp::socket::wait_read, [self = shared_from_this(), gen](error_code ec) {
    if (ec != asio::error::operation_aborted)
      self->idle_end(gen);
  });
}

void connection::idle_end(std::uint64_t gen) {
  if (phase_ == phase::idle && st_->take_idle(*this, gen))
    close();
}

/// Closes the socket once; false when it already was.
bool connection::shut() {
  if (phase_ == phase::closed)
    return false;
  phase_ = phase::closed;
  error_code ignored;
  socket_.shutdown(tcp::socket::shutdown_both, ignored);
  socket_.close(ignored);
  resolver_.cancel();
  idle_timer_.cancel();
  return true;
}

void connection::close() {
  if (shut())
    st_->closed(*this);
}

// ---- client_state -------------------------------------------------------------------------

client_state::client_state(asio::io_context& io, client_options opts)
    : io_(io), opts_(std::move(opts)), tls_(make_tls_context(opts_)) {
  if (opts_.max_connections_per_host == 0)
    throw std::invalid_argument("http: client max_connections_per_host must be at least 1");
  if (!header_value_ok(opts_.user_agent))
    throw std::invalid_argument("http: client user_agent has CR, LF or NUL");
}

void client_state::submit(const pending_ptr& p) {
  std::shared_ptr<connection> c;
  client_errc refused = client_errc::closed;
  bool queued = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!stopped_.load()) {
      auto& pool = pools_[p->key];
      c = take_connection(pool, *p);
      if (c || queued_ < opts_.max_queued) {
        if (c) {
          p->conn = c;
        } else {
          p->queued = true;
          p->queue_pos = pool.waiting.insert(pool.waiting.end(), p);
          ++queued_;
          queued = true;
        }
        arm_deadline(p); // under mu_, so it cannot fire before p is queued or assigned
      } else {
        refused = client_errc::overloaded;
        forget_if_empty(p->key);
      }
    }
  }
  if (c)
    return asio::post(c->strand(), [c, p] { c->run(p); });
  if (queued)
    return;
  complete_later(p, refused,
                 refused == client_errc::closed ? "the client was stopped"
                                                : std::to_string(opts_.max_queued) +
                                                      " requests already wait for a connection");
}

std::shared_ptr<connection> client_state::take_connection(host_pool& pool, const pending& p) {
  if (!pool.idle.empty()) {
    auto c = std::move(pool.idle.back());
    pool.idle.pop_back();
    c->in_pool_ = false;
    return c;
  }
  if (pool.connections >= opts_.max_connections_per_host)
    return nullptr;
  ++pool.connections;
  return open(p);
}

std::shared_ptr<connection> client_state::open(const pending& p) {
  auto c = std::make_shared<connection>(shared_from_this(), p);
  c->live_pos_ = live_.insert(live_.end(), c);
  return c;
}

pending_ptr client_state::pop_waiting(host_pool& pool) {
  auto p = std::move(pool.waiting.front());
  pool.waiting.pop_front();
  p->queued = false;
  --queued_;
  return p;
}

void client_state::forget_if_empty(const std::string& key) {
  auto it = pools_.find(key);
  if (it != pools_.end() && it->second.connections == 0 && it->second.waiting.empty())
    pools_.erase(it);
}

void client_state::arm_deadline(const pending_ptr& p) {
  p->deadline_timer.expires_after(std::max(p->timeout, std::chrono::milliseconds(0)));
  p->deadline_timer.async_wait([self = shared_from_this(), p](error_code ec) {
    if (!ec)
      self->on_deadline(p);
  });
}

void client_state::on_deadline(const pending_ptr& p) {
  if (p->finished.load())
    return;
  std::shared_ptr<connection> c;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (p->queued) {
      pools_[p->key].waiting.erase(p->queue_pos);
      p->queued = false;
      --queued_;
      forget_if_empty(p->key);
    } else {
      c = p->conn.lock();
    }
  }
  if (c)
    return asio::post(c->strand(), [c, p] { c->on_deadline(p); });
  incoming_response r;
  r.error = client_errc::timeout;
  r.detail = "timeout after " + std::to_string(p->timeout.count()) +
             " ms waiting for a connection to " + address_of(p->url);
  complete(p, std::move(r));
}

void client_state::complete(const pending_ptr& p, incoming_response&& r) {
  if (p->finished.exchange(true))
    return;
  p->deadline_timer.cancel(); // frees the request now rather than at its deadline
  if (r.error != client_errc::ok)
    failures_.fetch_add(1, std::memory_order_relaxed);
  auto done = std::move(p->done);
  try {
    if (done)
      done(std::move(r));
  } catch (...) {
    // The contract: a callback's exception is not the client's business.
  }
}

void client_state::complete_later(pending_ptr p, client_errc e, std::string detail) {
  incoming_response r;
  r.error = e;
  r.detail = std::move(detail);
  asio::post(io_, [self = shared_from_this(), p = std::move(p), r = std::move(r)]() mutable {
    self->complete(p, std::move(r));
  });
}

pending_ptr client_state::release(connection& c, std::uint64_t& idle_gen) {
  std::lock_guard<std::mutex> lock(mu_);
  idle_gen = 0;
  if (stopped_.load())
    return nullptr;
  auto& pool = pools_[c.key()];
  if (!pool.waiting.empty()) {
    auto p = pop_waiting(pool);
    p->conn = c.weak_from_this();
    return p;
  }
  c.in_pool_ = true;
  idle_gen = ++c.idle_gen_;
  pool.idle.push_back(c.shared_from_this());
  return nullptr;
}

bool client_state::take_idle(connection& c, std::uint64_t gen) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!c.in_pool_ || c.idle_gen_ != gen)
    return false;
  auto& idle = pools_[c.key()].idle;
  idle.erase(
      std::find_if(idle.begin(), idle.end(), [&](const auto& sp) { return sp.get() == &c; }));
  c.in_pool_ = false;
  return true;
}

void client_state::closed(connection& c) {
  std::shared_ptr<connection> fresh;
  pending_ptr next;
  {
    std::lock_guard<std::mutex> lock(mu_);
    live_.erase(c.live_pos_);
    auto& pool = pools_[c.key()];
    --pool.connections;
    if (!stopped_.load() && !pool.waiting.empty()) {
      next = pop_waiting(pool);
      ++pool.connections;
      fresh = open(*next);
      next->conn = fresh;
    } else {
      forget_if_empty(c.key());
    }
  }
  if (fresh)
    asio::post(fresh->strand(), [fresh, next] { fresh->run(next); });
}

void client_state::retry(connection& dead, pending_ptr p) {
  std::shared_ptr<connection> fresh;
  {
    std::lock_guard<std::mutex> lock(mu_);
    live_.erase(dead.live_pos_);
    if (!stopped_.load()) {
      fresh = open(*p); // takes over the dead connection's slot
      p->conn = fresh;
    } else {
      --pools_[dead.key()].connections;
      forget_if_empty(dead.key());
    }
  }
  if (fresh)
    return asio::post(fresh->strand(), [fresh, p] { fresh->run(p); });
  complete_later(std::move(p), client_errc::closed, "the client was stopped");
}

void client_state::stop() {
  std::vector<pending_ptr> waiting;
  std::vector<std::shared_ptr<connection>> conns;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopped_ = true;
    for (auto& entry : pools_) {
      for (auto& p : entry.second.waiting) {
        p->queued = false;
        waiting.push_back(std::move(p));
      }
      entry.second.waiting.clear();
      for (auto& c : entry.second.idle)
        c->in_pool_ = false;
      entry.second.idle.clear(); // still counted in `connections` until abort() closes them
    }
    queued_ = 0;
    for (auto& w : live_)
      if (auto c = w.lock())
        conns.push_back(std::move(c));
  }
  for (auto& c : conns)
    asio::post(c->strand(), [c] { c->abort(); });
  for (auto& p : waiting)
    complete_later(std::move(p), client_errc::closed, "the client was stopped");
}

/// The request as it will be sent; false with `error` for what cannot be.
bool prepare(pending& p, outgoing_request&& req, const client_options& o, std::string& error) {
  if (!parse_http_url(req.url, p.url, error) || !render_head(req, p.url, o, p.head, error))
    return false;
  p.key = (p.url.tls ? "https://" : "http://") + address_of(p.url);
  p.body = std::move(req.body);
  p.head_only = req.method == "HEAD";
  p.timeout = req.timeout;
  return true;
}

} // namespace

// ---- client -------------------------------------------------------------------------------

struct client::impl : client_state {
  using client_state::client_state;
};

client::client(boost::asio::io_context& io, client_options opts)
    : impl_(std::make_shared<impl>(io, std::move(opts))) {}

client::~client() {
  impl_->stop();
}

void client::request(outgoing_request req, std::function<void(incoming_response&&)> done) {
  impl_->requests_.fetch_add(1, std::memory_order_relaxed);
  auto p = std::make_shared<pending>(impl_->io_);
  p->done = std::move(done);
  std::string error;
  if (!prepare(*p, std::move(req), impl_->opts_, error))
    return impl_->complete_later(std::move(p), client_errc::bad_url, std::move(error));
  impl_->submit(p);
}

void client::stop() {
  impl_->stop();
}

client::stats_t client::stats() const {
  stats_t s;
  s.requests = impl_->requests_.load(std::memory_order_relaxed);
  s.failures = impl_->failures_.load(std::memory_order_relaxed);
  s.connections_opened = impl_->opened_.load(std::memory_order_relaxed);
  s.connections_reused = impl_->reused_.load(std::memory_order_relaxed);
  return s;
}

} // namespace sessiond::http
