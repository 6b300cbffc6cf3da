// The connections to one Redis server: our RESP encoder writes commands, hiredis' reader parses
// replies; Asio owns sockets, timers, write batching and reconnects. One strand per connection
// serialises its state. Past 800 lines on purpose: one connection's life is read in one place.
#include "adapters/redis/pool.hpp"

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <boost/circular_buffer.hpp>
#include <hiredis/hiredis.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <system_error>
#include <unordered_map>
#include <unordered_set>
#include <utility>

namespace sessiond::redis::detail {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using steady = std::chrono::steady_clock;
using error_code = boost::system::error_code;

namespace {

// --- reply building: hiredis reader callbacks that fill `reply` in place -----------------
// The root of each reply is one `reply` owned by the connection (reader privdata); children
// live in their parent's `elements`, sized once by createArray, so pointers stay valid. The
// bytes are copied once, from hiredis' buffer into the final std::string.

/// The reply object for task `t`, cleared and typed; null if hiredis' indices do not fit.
reply* slot_for(const redisReadTask* t, reply::kind k) {
  auto* r = static_cast<reply*>(t->privdata);
  if (t->parent != nullptr) {
    auto& siblings = static_cast<reply*>(t->parent->obj)->elements;
    if (t->idx < 0 || static_cast<std::size_t>(t->idx) >= siblings.size())
      return nullptr;
    r = &siblings[static_cast<std::size_t>(t->idx)];
  }
  r->type = k;
  r->str.clear();
  r->integer = 0;
  r->elements.clear();
  return r;
}

/// Runs a reader callback; nullptr (hiredis then reports "out of memory" and the connection
/// resets) instead of an exception unwinding through C frames.
template <class F>
void* guarded(F f) noexcept {
  try {
    return f();
  } catch (...) {
    return nullptr;
  }
}

void* create_string(const redisReadTask* t, char* s, size_t len) {
  return guarded([&]() -> void* {
    auto k = t->type == REDIS_REPLY_ERROR    ? reply::kind::error
             : t->type == REDIS_REPLY_STATUS ? reply::kind::status
                                             : reply::kind::string;
    reply* r = slot_for(t, k);
    if (r != nullptr)
      r->str.assign(s, len);
    return r;
  });
}

void* create_array(const redisReadTask* t, int n) {
  return guarded([&]() -> void* {
    reply* r = slot_for(t, reply::kind::array);
    if (r != nullptr)
      r->elements.resize(static_cast<std::size_t>(std::max(n, 0)));
    return r;
  });
}

void* create_integer(const redisReadTask* t, long long v) {
  reply* r = slot_for(t, reply::kind::integer);
  if (r != nullptr)
    r->integer = v;
  return r;
}

void* create_nil(const redisReadTask* t) {
  return slot_for(t, reply::kind::nil);
}

/// Only ever called on the root (a partial reply after a protocol error): reset, never free.
void free_object(void* p) {
  *static_cast<reply*>(p) = reply{};
}

redisReplyObjectFunctions reply_functions{create_string, create_array, create_integer, create_nil,
                                          free_object};

using reader_ptr = std::unique_ptr<redisReader, void (*)(redisReader*)>;

reader_ptr make_reader(reply* root) {
  reader_ptr r(redisReaderCreateWithFunctions(&reply_functions), redisReaderFree);
  if (!r)
    throw std::bad_alloc();
  r->privdata = root;
  r->maxbuf =
      std::size_t{256} * 1024; // keep the buffer across reads unless a huge reply inflated it
  return r;
}

// --- state shared by the client and its connections ----------------------------------------

/// The TLS context of a rediss:// client: the peer's certificate is verified against
/// `tls_ca_file` (or the system's CAs) and must name the host; `tls_cert_file` and
/// `tls_key_file`, when set, are the client's own. Throws std::runtime_error.
std::unique_ptr<asio::ssl::context> make_tls_context(const client_options& o) {
  if (!o.tls)
    return nullptr;
  auto ctx = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_client);
  boost::system::error_code ec;
  ctx->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                   asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                   asio::ssl::context::no_tlsv1_1);
  if (o.tls_ca_file.empty()) {
    ctx->set_default_verify_paths(ec);
  } else {
    std::ifstream probe(o.tls_ca_file);
    if (!probe)
      throw std::runtime_error("redis: cannot read the TLS CA file " + o.tls_ca_file + ": " +
                               std::strerror(errno));
    ctx->load_verify_file(o.tls_ca_file, ec);
  }
  if (ec)
    throw std::runtime_error(
        "redis: cannot load the TLS CA certificates" +
        (o.tls_ca_file.empty() ? std::string(" of the system") : " from " + o.tls_ca_file) + ": " +
        ec.message());
  if (o.tls_cert_file.empty() != o.tls_key_file.empty())
    throw std::runtime_error("redis: a TLS client certificate needs its key, and a key its "
                             "certificate: set both or neither");
  if (!o.tls_cert_file.empty()) {
    for (const std::string* file : {&o.tls_cert_file, &o.tls_key_file})
      if (!std::ifstream(*file))
        throw std::runtime_error("redis: cannot read the TLS client " +
                                 std::string(file == &o.tls_cert_file ? "certificate" : "key") +
                                 " file " + *file + ": " + std::strerror(errno));
    // No passphrase prompt (OpenSSL's default reads the terminal): an encrypted key fails.
    ctx->set_password_callback(
        [](std::size_t, asio::ssl::context::password_purpose) { return std::string(); });
    ctx->use_certificate_chain_file(o.tls_cert_file, ec);
    if (ec)
      throw std::runtime_error("redis: cannot load the TLS client certificate from " +
                               o.tls_cert_file + ": " + ec.message());
    // OpenSSL checks here that the key belongs to the certificate ("key values mismatch").
    ctx->use_private_key_file(o.tls_key_file, asio::ssl::context::pem, ec);
    if (ec)
      throw std::runtime_error("redis: cannot load the TLS client key from " + o.tls_key_file +
                               " for " + o.tls_cert_file + ": " + ec.message());
  }
  ctx->set_verify_mode(asio::ssl::verify_peer);
  ctx->set_verify_callback(asio::ssl::host_name_verification(o.host));
  return ctx;
}

struct shared_state {
  shared_state(asio::io_context& io, client_options o)
      : io(io),
        opts(std::move(o)),
        notify_strand(asio::make_strand(io)),
        tls(make_tls_context(opts)) {}
  asio::io_context& io;
  const client_options opts;
  std::atomic<bool> stopped{false};
  std::atomic<std::uint64_t> commands{0}, errors{0}, reconnects{0};
  std::atomic<std::size_t> up_count{0};
  std::atomic<bool> ever_up{false}; ///< some connection has been up
  std::mutex flip_mu;               // orders up/down flips so notifications are posted in order
  std::mutex notify_mu;             // guards on_state and is held while it runs
  std::function<void(bool)> on_state;
  asio::strand<asio::io_context::executor_type> notify_strand;
  const std::unique_ptr<asio::ssl::context> tls; ///< rediss:// only
  std::mutex error_mu;
  std::string last_error; ///< why the last connect failed after TCP, for operators
  void note_error(const std::string& what) {
    std::lock_guard<std::mutex> lk(error_mu);
    last_error = what;
  }
  std::string address() const { return opts.host + ":" + std::to_string(opts.port); }
  void note_tls_error(const std::string& why) {
    note_error("TLS handshake with " + address() + " failed: " + why);
  }
  void note_replica(const std::string& how) {
    note_error(address() + " is a read-only replica (" + how +
               "): reconnecting until the address leads to the primary");
  }
};

/// Counts a connection going up or down; posts a notification when "any up" flips.
void note_flip(const std::shared_ptr<shared_state>& st, bool up) {
  std::lock_guard<std::mutex> lk(st->flip_mu);
  std::size_t n = up ? ++st->up_count : --st->up_count;
  if (n != (up ? 1u : 0u))
    return;
  asio::post(st->notify_strand, [st, up] {
    std::lock_guard<std::mutex> nl(st->notify_mu);
    if (st->on_state && !st->stopped)
      st->on_state(up);
  });
}

// role: the handshake's last step; a server that is not the primary fails it.
// asking: the ASKING before a redirected command; its OK is dropped.
// wait: the WAIT after an eval with wait_replicas; it completes that eval (or is dropped when
// the eval was sent again after NOSCRIPT, with a WAIT of its own).
enum class op : std::uint8_t { user, eval, load, handshake, role, asking, wait };

/// One command written and waiting for its reply, in send order.
struct pending {
  op kind = op::user;
  bool retried = false; ///< eval: NOSCRIPT already retried once
  bool asking = false;  ///< eval: send ASKING again with a NOSCRIPT retry
  steady::time_point at;
  callback cb;
  std::shared_ptr<const script> scr;          ///< eval and load
  std::vector<std::string> keys, args;        ///< eval: kept for a NOSCRIPT retry
  std::unique_ptr<reply> load_error;          ///< eval: why its SCRIPT LOAD failed
  int wait_replicas = 0, wait_timeout_ms = 0; ///< eval: WAIT after it
  std::unique_ptr<reply> waited;              ///< wait: the eval's reply, held until WAIT's
};

// --- one connection ------------------------------------------------------------------------
// Every member below `strand_` is touched only on `strand_`; `up_` is also read elsewhere.
// `gen_` changes whenever the socket is reset, so handlers of an old socket ignore themselves.

class connection : public std::enable_shared_from_this<connection> {
public:
  connection(std::shared_ptr<shared_state> st, asio::io_context& io)
      : st_(std::move(st)),
        io_(io),
        strand_(asio::make_strand(io)),
        socket_(strand_),
        resolver_(strand_),
        deadline_(strand_),
        conn_timer_(strand_),
        reader_(nullptr, redisReaderFree),
        pending_(256),
        rng_(std::random_device{}()) {}

  bool up() const { return up_.load(std::memory_order_acquire); }
  /// True on a thread that runs this connection's io_context.
  bool local() const { return io_.get_executor().running_in_this_thread(); }
  void start() {
    post([](connection& c) { c.connect(); });
  }
  void shutdown() {
    post([](connection& c) { c.stop(); });
  }
  void submit(request&& r);
  /// Fails a command at once, on this strand so it stays behind earlier commands' callbacks.
  void refuse(callback&& cb, errc e) {
    asio::post(strand_, [cb = std::move(cb), e]() mutable { deliver(cb, e, reply{}); });
  }

private:
  enum class phase { idle, connecting, handshaking, up, stopped };

  template <class F>
  void post(F f) {
    asio::post(strand_, [self = shared_from_this(), f]() mutable { f(*self); });
  }
  template <class F>
  auto on_strand(F f) {
    return asio::bind_executor(strand_, [self = shared_from_this(), gen = gen_, f](auto&&... a) {
      if (gen == self->gen_)
        f(*self, std::forward<decltype(a)>(a)...);
    });
  }

  void connect();
  void on_connected();
  void send_handshake();
  void mark_up();
  void stop();
  void reset(errc why);
  void schedule_reconnect();
  std::chrono::milliseconds next_backoff();

  void enqueue(request&& r);
  void enqueue_eval(pending&& p);
  /// Queues ASKING (cluster: the next command is for a slot being imported here).
  void send_asking() {
    argv_.assign({"ASKING"});
    argvlen_.assign({6});
    append_command();
    pending a;
    a.kind = op::asking;
    push(std::move(a));
  }
  /// Encodes argv_ into the output buffer and queues `p` for its reply; an argument list that
  /// cannot be encoded answers an error reply instead.
  void send_encoded(pending&& p);
  void push(pending&& p);
  void push_arg(std::string_view a) {
    argv_.push_back(a.data());
    argvlen_.push_back(a.size());
  }
  bool append_command();
  void flush();
  void read_loop();
  void on_read(std::size_t n);
  void on_reply(reply&& r);
  void on_eval_reply(reply&& r);
  void complete_front(errc e, reply&& r);
  void fail_all(errc e);
  void arm_deadline();
  void on_deadline();

  std::shared_ptr<shared_state> st_;
  asio::io_context& io_;
  std::atomic<bool> up_{false};
  asio::strand<asio::io_context::executor_type> strand_;
  tcp::socket socket_;
  /// rediss://: TLS over socket_, made anew for every connect. Every handler of an operation on
  /// it holds a reference: reset() drops ours while operations may still be in flight, and the
  /// stream must outlive them (they complete with operation_aborted after the socket closes).
  std::shared_ptr<asio::ssl::stream<tcp::socket&>> tls_;
  tcp::resolver resolver_;
  asio::steady_timer deadline_;   // the oldest pending command's deadline
  asio::steady_timer conn_timer_; // connect timeout, then reconnect backoff
  reply root_;                    // the reply hiredis is building (reader privdata)
  reader_ptr reader_;
  boost::circular_buffer<pending> pending_;
  std::string out_, wbuf_; // commands not yet written / being written
  std::array<char, std::size_t{32} * 1024> rbuf_{};
  std::vector<const char*> argv_;
  std::vector<std::size_t> argvlen_;
  std::unordered_set<std::string> loaded_; // script SHAs loaded on this socket
  phase phase_ = phase::idle;
  std::uint64_t gen_ = 0;
  unsigned attempt_ = 0;
  std::size_t handshake_left_ = 0;
  bool writing_ = false;
  bool deadline_armed_ = false;
  bool ever_up_ = false;
  std::minstd_rand rng_;
};

// --- connecting ---

void connection::connect() {
  if (st_->stopped || phase_ != phase::idle)
    return;
  phase_ = phase::connecting;
  ++gen_;
  reader_ = make_reader(&root_);
  conn_timer_.expires_after(st_->opts.connect_timeout);
  conn_timer_.async_wait(on_strand([](connection& c, error_code ec) {
    if (!ec && (c.phase_ == phase::connecting || c.phase_ == phase::handshaking)) {
      c.reset(errc::closed);
    }
  }));
  resolver_.async_resolve(
      st_->opts.host, std::to_string(st_->opts.port),
      on_strand([](connection& c, error_code ec, const tcp::resolver::results_type& eps) {
        if (ec)
          return c.reset(errc::closed);
        asio::async_connect(c.socket_, eps, c.on_strand([](connection& c2, error_code ec2, auto&&) {
          if (ec2)
            return c2.reset(errc::closed);
          c2.on_connected();
        }));
      }));
}

void connection::on_connected() {
  error_code ignored;
  socket_.set_option(tcp::no_delay(true), ignored);
  socket_.set_option(asio::socket_base::keep_alive(true), ignored);
  phase_ = phase::handshaking;
  if (!st_->tls) {
    read_loop();
    return send_handshake();
  }
  // TLS first (within connect_timeout, like the rest of the handshake), then AUTH/SELECT/PING.
  tls_ = std::make_shared<asio::ssl::stream<tcp::socket&>>(socket_, *st_->tls);
  SSL_set_tlsext_host_name(tls_->native_handle(), st_->opts.host.c_str());
  tls_->async_handshake(asio::ssl::stream_base::client,
                        on_strand([keep = tls_](connection& c, error_code ec) {
                          if (ec) {
                            c.st_->note_tls_error(ec.message());
                            return c.reset(errc::closed);
                          }
                          c.read_loop();
                          c.send_handshake();
                        }));
}

/// AUTH and SELECT when configured, else PING: the connection is up only once Redis answered,
/// so a server that accepts and then refuses (maxclients, bad password) backs off.
void connection::send_handshake() {
  const auto& o = st_->opts;
  std::string db = std::to_string(o.db);
  handshake_left_ = 0;
  auto send = [&](std::initializer_list<std::string_view> args) {
    argv_.clear();
    argvlen_.clear();
    for (auto a : args)
      push_arg(a);
    append_command();
    pending p;
    p.kind = op::handshake;
    push(std::move(p));
    ++handshake_left_;
  };
  if (!o.password.empty())
    send({"AUTH", o.password});
  if (o.db != 0)
    send({"SELECT", db});
  send({"PING"}); // answers LOADING while Redis loads its dataset (AUTH, SELECT and ROLE do not)
  // Every command sessiond sends may write: a replica (the old primary after a failover that
  // moved a DNS name) would refuse them all while the connection looked fine.
  send({"ROLE"});
  pending_.back().kind = op::role;
  flush();
}

void connection::mark_up() {
  conn_timer_.cancel();
  st_->note_error("");
  phase_ = phase::up;
  attempt_ = 0;
  if (ever_up_)
    ++st_->reconnects;
  ever_up_ = true;
  st_->ever_up.store(true);
  up_.store(true, std::memory_order_release);
  note_flip(st_, true);
}

void connection::stop() {
  if (phase_ == phase::stopped)
    return;
  reset(errc::closed);
  phase_ = phase::stopped;
}

/// Drops the socket and everything tied to it; pending commands fail with `why` (their
/// replies can no longer be matched). Reconnects unless the client is stopping.
void connection::reset(errc why) {
  bool was_up = phase_ == phase::up;
  ++gen_;
  phase_ = phase::idle;
  if (was_up) {
    up_.store(false, std::memory_order_release);
    note_flip(st_, false);
  }
  error_code ignored;
  socket_.close(ignored);
  tls_.reset();
  resolver_.cancel();
  deadline_.cancel();
  conn_timer_.cancel();
  deadline_armed_ = writing_ = false;
  out_.clear();
  wbuf_.clear();
  loaded_.clear();
  fail_all(why);
  if (!st_->stopped)
    schedule_reconnect();
}

/// The first retry is immediate (a reset or a restarted server), then min, 2*min, … up to
/// max, each drawn from [d/2, d] (not below min) so that many nodes do not reconnect in step.
std::chrono::milliseconds connection::next_backoff() {
  using ms = std::chrono::milliseconds;
  if (attempt_++ == 0)
    return ms(0);
  ms d = st_->opts.reconnect_min * (1LL << std::min(attempt_ - 2, 20u));
  d = std::max(ms(1), std::min(d, st_->opts.reconnect_max));
  std::uniform_int_distribution<long long> half(0, d.count() / 2);
  return std::max(st_->opts.reconnect_min, d - ms(half(rng_)));
}

void connection::schedule_reconnect() {
  conn_timer_.expires_after(next_backoff());
  conn_timer_.async_wait(on_strand([](connection& c, error_code ec) {
    if (!ec)
      c.connect();
  }));
}

// --- sending ---

void connection::submit(request&& r) {
  asio::post(strand_, [self = shared_from_this(), r = std::move(r)]() mutable {
    self->enqueue(std::move(r));
  });
}

void connection::enqueue(request&& r) {
  if (phase_ != phase::up) {
    ++st_->errors;
    return deliver(r.cb, st_->stopped ? errc::closed : errc::disconnected, reply{});
  }
  pending p;
  p.cb = std::move(r.cb);
  if (r.scr) {
    p.kind = op::eval;
    p.scr = std::move(r.scr);
    p.keys = std::move(r.args);
    p.args = std::move(r.eval_args);
    p.asking = r.asking;
    p.wait_replicas = r.wait_replicas;
    p.wait_timeout_ms = r.wait_timeout_ms;
    return enqueue_eval(std::move(p));
  }
  if (r.asking)
    send_asking();
  argv_.clear();
  argvlen_.clear();
  for (const auto& a : r.args)
    push_arg(a);
  send_encoded(std::move(p));
}

void connection::send_encoded(pending&& p) {
  if (!append_command()) {
    reply err{reply::kind::error, "ERR command could not be encoded", 0, {}};
    return deliver(p.cb, errc::ok, std::move(err));
  }
  push(std::move(p));
  flush();
}

/// EVALSHA, preceded by SCRIPT LOAD the first time this socket sees the script, so the
/// usual case (new connection, restarted Redis) keeps the caller's order. NOSCRIPT (after
/// SCRIPT FLUSH) is still handled in on_eval_reply.
void connection::enqueue_eval(pending&& p) {
  const script& s = *p.scr;
  if (loaded_.insert(s.sha1).second) {
    argv_.assign({"SCRIPT", "LOAD", s.source.data()});
    argvlen_.assign({6, 4, s.source.size()});
    append_command();
    pending load;
    load.kind = op::load;
    load.scr = p.scr;
    push(std::move(load));
  }
  if (p.asking)
    send_asking(); // right before EVALSHA: ASKING holds for the next command only
  char numkeys[24];
  auto nk = std::to_chars(numkeys, numkeys + sizeof numkeys, p.keys.size()).ptr;
  argv_.assign({"EVALSHA", s.sha1.data(), numkeys});
  argvlen_.assign({7, s.sha1.size(), static_cast<std::size_t>(nk - numkeys)});
  for (const auto& k : p.keys)
    push_arg(k);
  for (const auto& a : p.args)
    push_arg(a);
  if (p.wait_replicas <= 0)
    return send_encoded(std::move(p));
  // EVALSHA and its WAIT in one write: WAIT counts this connection's writes, so it must follow
  // the script on the same connection, before anything else this connection sends.
  if (!append_command()) {
    reply err{reply::kind::error, "ERR command could not be encoded", 0, {}};
    return deliver(p.cb, errc::ok, std::move(err));
  }
  auto n = std::to_string(p.wait_replicas), t = std::to_string(p.wait_timeout_ms);
  argv_.assign({"WAIT", n.data(), t.data()});
  argvlen_.assign({4, n.size(), t.size()});
  append_command();
  push(std::move(p));
  pending w;
  w.kind = op::wait;
  push(std::move(w));
  flush();
}

/// Formats argv_ into the pending output. An empty command is refused: Redis would not
/// answer it and every later reply would be matched to the wrong callback.
bool connection::append_command() {
  if (argv_.empty())
    return false;
  redis::append_command(out_, argv_.size(), argv_.data(), argvlen_.data());
  return true;
}

void connection::push(pending&& p) {
  if (pending_.full())
    pending_.set_capacity(pending_.capacity() * 2);
  p.at = steady::now();
  pending_.push_back(std::move(p));
  arm_deadline();
}

/// Writes everything pending unless a write is in flight; what arrives meanwhile goes out
/// in the next write.
void connection::flush() {
  if (writing_ || out_.empty())
    return;
  std::swap(out_, wbuf_);
  writing_ = true;
  auto done = on_strand([keep = tls_](connection& c, error_code ec, std::size_t) {
    c.writing_ = false;
    if (ec)
      return c.reset(errc::closed);
    if (c.wbuf_.capacity() > (1u << 20))
      std::string().swap(c.wbuf_);
    c.wbuf_.clear();
    c.flush();
  });
  if (tls_)
    asio::async_write(*tls_, asio::buffer(wbuf_), std::move(done));
  else
    asio::async_write(socket_, asio::buffer(wbuf_), std::move(done));
}

// --- receiving ---

void connection::read_loop() {
  auto done = on_strand([keep = tls_](connection& c, error_code ec, std::size_t n) {
    if (ec) {
      // Closed before the handshake's replies: with TLS 1.3 a server that wants a client
      // certificate (or rejects ours) says so only now, after the TLS handshake passed.
      if (c.phase_ == phase::handshaking)
        c.st_->note_error(c.st_->address() +
                          " closed the connection during the handshake: " + ec.message());
      return c.reset(errc::closed);
    }
    c.on_read(n);
  });
  if (tls_)
    tls_->async_read_some(asio::buffer(rbuf_), std::move(done));
  else
    socket_.async_read_some(asio::buffer(rbuf_), std::move(done));
}

void connection::on_read(std::size_t n) {
  std::uint64_t gen = gen_;
  if (redisReaderFeed(reader_.get(), rbuf_.data(), n) != REDIS_OK)
    return reset(errc::protocol);
  for (;;) {
    void* obj = nullptr;
    if (redisReaderGetReply(reader_.get(), &obj) != REDIS_OK)
      return reset(errc::protocol);
    if (obj == nullptr)
      break;
    if (pending_.empty())
      return reset(errc::protocol); // a reply nobody asked for
    reply r = std::move(root_);
    // READONLY: the primary became a replica under us; LOADING: it loads a dataset. Either way
    // the connection is dropped after this reply and made again (resolving the name anew; the
    // handshake's PING and ROLE keep it down while that lasts).
    bool readonly = r.is_error() && r.str.compare(0, 9, "READONLY ") == 0;
    bool loading = r.is_error() && r.str.compare(0, 8, "LOADING ") == 0;
    on_reply(std::move(r));
    if (gen != gen_)
      return; // a failed handshake reset the socket
    if (readonly || loading) {
      if (readonly)
        st_->note_replica("it answered READONLY");
      else
        st_->note_error(st_->address() + " is loading its dataset (LOADING)");
      return reset(errc::closed);
    }
  }
  read_loop();
}

void connection::on_reply(reply&& r) {
  switch (pending_.front().kind) {
  case op::user:
    return complete_front(errc::ok, std::move(r));
  case op::eval:
    return on_eval_reply(std::move(r));
  case op::load: {
    pending load = std::move(pending_.front());
    pending_.pop_front();
    if (!r.is_error())
      return;
    loaded_.erase(load.scr->sha1);
    // Its EVALSHA follows and will fail with NOSCRIPT: report the load error instead.
    if (!pending_.empty() && pending_.front().kind == op::eval) {
      pending_.front().load_error = std::make_unique<reply>(std::move(r));
    }
    return;
  }
  case op::asking:
    pending_.pop_front(); // an error here shows again as the command's own MOVED
    return;
  case op::wait: {
    pending w = std::move(pending_.front());
    pending_.pop_front();
    if (!w.cb)
      return; // its eval was sent again (NOSCRIPT) with a WAIT of its own
    reply out = std::move(*w.waited);
    if (!out.is_error() && !(r.type == reply::kind::integer && r.integer >= w.wait_replicas))
      out = reply{reply::kind::error,
                  "NOREPLICAS " +
                      (r.is_error()
                           ? r.str
                           : std::to_string(r.integer) + " of " + std::to_string(w.wait_replicas)) +
                      " replicas acknowledged the write within " +
                      std::to_string(w.wait_timeout_ms) + " ms",
                  0,
                  {}};
    return deliver(w.cb, errc::ok, std::move(out));
  }
  case op::handshake:
    pending_.pop_front();
    if (r.is_error()) { // WRONGPASS, LOADING, max number of clients reached, …
      st_->note_error(st_->address() + " refused the connection: " + r.str);
      return reset(errc::closed);
    }
    if (--handshake_left_ == 0)
      mark_up();
    return;
  case op::role:
    // An error (ROLE not allowed to this user) cannot tell: the connection is taken.
    pending_.pop_front();
    if (r.type == reply::kind::array && !r.elements.empty() && r.elements[0].str != "master") {
      st_->note_replica("ROLE " + r.elements[0].str);
      return reset(errc::closed);
    }
    if (--handshake_left_ == 0)
      mark_up();
    return;
  }
}

void connection::on_eval_reply(reply&& r) {
  pending& p = pending_.front();
  bool noscript = !p.load_error && r.is_error() && r.str.compare(0, 8, "NOSCRIPT") == 0;
  if (p.wait_replicas > 0 && (!noscript || p.retried)) {
    // Its WAIT is next in line: that reply completes it.
    pending e = std::move(p);
    pending_.pop_front();
    auto& w = pending_.front();
    w.cb = std::move(e.cb);
    w.wait_replicas = e.wait_replicas;
    w.wait_timeout_ms = e.wait_timeout_ms;
    w.waited = std::make_unique<reply>(e.load_error ? std::move(*e.load_error) : std::move(r));
    return;
  }
  if (p.load_error)
    return complete_front(errc::ok, std::move(*p.load_error));
  if (!noscript || p.retried)
    return complete_front(errc::ok, std::move(r));
  pending retry = std::move(p);
  pending_.pop_front();
  retry.retried = true;
  loaded_.erase(retry.scr->sha1);
  enqueue_eval(std::move(retry)); // SCRIPT LOAD + EVALSHA again, on this connection
}

void connection::complete_front(errc e, reply&& r) {
  if (e != errc::ok && pending_.front().cb)
    ++st_->errors;
  deliver(pending_.front().cb, e, std::move(r));
  pending_.pop_front();
}

void connection::fail_all(errc e) {
  while (!pending_.empty())
    complete_front(e, reply{});
}

// --- deadlines ---
// One timer per connection, armed for the oldest pending command only; it is not touched
// per command. When it fires it either times everything out or re-arms for the new oldest.

void connection::arm_deadline() {
  if (deadline_armed_ || pending_.empty())
    return;
  deadline_armed_ = true;
  deadline_.expires_at(pending_.front().at + st_->opts.command_timeout);
  deadline_.async_wait(on_strand([](connection& c, error_code ec) {
    c.deadline_armed_ = false;
    if (!ec)
      c.on_deadline();
  }));
}

void connection::on_deadline() {
  if (pending_.empty())
    return;
  if (steady::now() < pending_.front().at + st_->opts.command_timeout)
    return arm_deadline();
  reset(errc::timeout);
}

} // namespace

/// Scripts interned per thread by SHA-1, so an eval shares the text instead of copying it.
std::shared_ptr<const script> intern(const script& s) {
  thread_local std::unordered_map<std::string, std::shared_ptr<const script>> cache;
  if (auto it = cache.find(s.sha1); it != cache.end())
    return it->second;
  if (cache.size() >= 256)
    cache.clear(); // scripts are few; this only bounds misuse
  auto p = std::make_shared<const script>(s);
  cache.emplace(s.sha1, p);
  return p;
}

/// Runs a user callback; an exception must not unwind through Asio and kill an I/O thread.
void deliver(callback& cb, errc e, reply&& r) {
  if (!cb)
    return;
  try {
    cb(e, std::move(r));
  } catch (...) { // NOLINT(bugprone-empty-catch): nobody to report to; the reply is consumed
  }
}

std::string address_of(const std::string& host, std::uint16_t port) {
  bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

// --- pool -----------------------------------------------------------------------------------

struct pool::impl {
  std::shared_ptr<shared_state> st;
  std::vector<std::shared_ptr<connection>> conns;
  std::atomic<bool> started{false};

  /// The hinted connection, else the next one up; null when none is up.
  [[nodiscard]] connection* pick(std::size_t hint) const {
    for (std::size_t k = 0; k < conns.size(); ++k) {
      auto& c = conns[(hint + k) % conns.size()];
      if (c->up())
        return c.get();
    }
    return nullptr;
  }
};

pool::pool(const std::vector<boost::asio::io_context*>& loops, client_options opts)
    : impl_(std::make_shared<impl>()) {
  if (loops.empty())
    throw std::invalid_argument("redis: client needs at least one io_context");
  opts.connections = std::max<std::size_t>(1, opts.connections);
  address_ = address_of(opts.host, opts.port);
  impl_->st = std::make_shared<shared_state>(*loops.front(), std::move(opts));
  for (std::size_t i = 0; i < impl_->st->opts.connections; ++i)
    impl_->conns.push_back(std::make_shared<connection>(impl_->st, *loops[i % loops.size()]));
}

pool::~pool() {
  try {
    stop();
  } catch (...) { // NOLINT(bugprone-empty-catch): only allocation can fail; nothing to do
  }
}

void pool::start() {
  if (impl_->started.exchange(true) || impl_->st->stopped)
    return;
  for (auto& c : impl_->conns)
    c->start();
}

void pool::stop() {
  if (impl_->st->stopped.exchange(true))
    return;
  {
    std::lock_guard<std::mutex> lk(impl_->st->notify_mu); // waits out a running notification
    impl_->st->on_state = nullptr;
  }
  for (auto& c : impl_->conns)
    c->shutdown();
}

bool pool::try_submit(std::size_t hint, request& r) {
  connection* c = impl_->st->stopped ? nullptr : impl_->pick(hint);
  if (c == nullptr)
    return false;
  c->submit(std::move(r));
  return true;
}

void pool::refuse(std::size_t hint, callback&& cb, errc e) {
  ++impl_->st->errors;
  impl_->conns[hint % impl_->conns.size()]->refuse(std::move(cb), e);
}

std::size_t pool::local_hint(std::size_t hint) const {
  const auto& conns = impl_->conns;
  for (std::size_t k = 0; k < conns.size(); ++k) {
    auto i = (hint + k) % conns.size();
    if (conns[i]->local() && conns[i]->up())
      return i;
  }
  return hint;
}

bool pool::connected() const {
  return impl_->st->up_count.load() > 0;
}

bool pool::ever_up() const {
  return impl_->st->ever_up.load();
}

bool pool::stopped() const {
  return impl_->st->stopped.load();
}

std::string pool::last_error() const {
  std::lock_guard<std::mutex> lk(impl_->st->error_mu);
  return impl_->st->last_error;
}

client_stats pool::stats() const {
  const auto& st = *impl_->st;
  return {st.commands.load(), st.errors.load(), st.reconnects.load(), st.up_count.load()};
}

void pool::on_state_change(std::function<void(bool up)> f) {
  std::lock_guard<std::mutex> lk(impl_->st->notify_mu);
  if (!impl_->st->stopped)
    impl_->st->on_state = std::move(f);
}

const client_options& pool::options() const {
  return impl_->st->opts;
}

} // namespace sessiond::redis::detail
