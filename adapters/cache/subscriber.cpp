// The invalidation subscriber: one Asio loop on a thread of its own, hiredis' reader for replies.
// The members of impl under "the loop's own" are touched on the subscriber's thread only (and by
// stop() once it joined that thread).
#include "adapters/cache/subscriber.hpp"

#include "model/backoff.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <hiredis/hiredis.h>
#include <hiredis/read.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <mutex>
#include <random>
#include <stdexcept>
#include <thread>
#include <utility>

namespace sessiond::cache {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

namespace {

/// The TLS rules of redis::client (adapters/redis/client.cpp), which keeps its context builder
/// private: TLS 1.2 or later, the server's certificate verified against `tls_ca_file` or the
/// system's CAs and required to name the host, the client's own certificate and key when both
/// are set. Throws std::runtime_error with one line saying what is wrong.
std::unique_ptr<ssl::context> make_tls_context(const redis::client_options& o) {
  if (!o.tls)
    return nullptr;
  auto ctx = std::make_unique<ssl::context>(ssl::context::tls_client);
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                   ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
  auto check = [](const error_code& ec, const std::string& what) {
    if (ec)
      throw std::runtime_error("cache subscriber: cannot load " + what + ": " + ec.message());
  };
  auto readable = [](const std::string& file, const char* what) {
    if (!std::ifstream(file))
      throw std::runtime_error("cache subscriber: cannot read the TLS " + std::string(what) +
                               " file " + file + ": " + std::strerror(errno));
  };
  error_code ec;
  if (o.tls_ca_file.empty()) {
    ctx->set_default_verify_paths(ec);
    check(ec, "the system's TLS CA certificates");
  } else {
    readable(o.tls_ca_file, "CA");
    ctx->load_verify_file(o.tls_ca_file, ec);
    check(ec, "the TLS CA certificates from " + o.tls_ca_file);
  }
  if (o.tls_cert_file.empty() != o.tls_key_file.empty())
    throw std::runtime_error("cache subscriber: a TLS client certificate needs its key, and a key "
                             "its certificate: set both or neither");
  if (!o.tls_cert_file.empty()) {
    readable(o.tls_cert_file, "client certificate");
    readable(o.tls_key_file, "client key");
    // No passphrase prompt (OpenSSL's default reads the terminal): an encrypted key fails.
    ctx->set_password_callback(
        [](std::size_t, ssl::context::password_purpose) { return std::string(); });
    ctx->use_certificate_chain_file(o.tls_cert_file, ec);
    check(ec, "the TLS client certificate from " + o.tls_cert_file);
    ctx->use_private_key_file(o.tls_key_file, ssl::context::pem, ec);
    check(ec, "the TLS client key from " + o.tls_key_file);
  }
  ctx->set_verify_mode(ssl::verify_peer);
  ctx->set_verify_callback(ssl::host_name_verification(o.host));
  return ctx;
}

using reader_ptr = std::unique_ptr<redisReader, void (*)(redisReader*)>;
struct reply_free {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using reply_ptr = std::unique_ptr<redisReply, reply_free>;

std::string_view text(const redisReply& r) {
  return {r.str != nullptr ? r.str : "", r.len};
}

/// True when `r` is an array of at least `n` elements whose first is the string `kind`
/// ("subscribe", "message", "pong"): the shape of every reply in subscribed mode.
bool is_push(const redisReply& r, std::string_view kind, std::size_t n) {
  if (r.type != REDIS_REPLY_ARRAY || r.elements < n)
    return false;
  const redisReply& k = *r.element[0];
  return (k.type == REDIS_REPLY_STRING || k.type == REDIS_REPLY_STATUS) && text(k) == kind;
}

} // namespace

struct subscriber::impl {
  impl(subscriber_options o, message_fn m, state_fn s)
      : opts(std::move(o)),
        on_message(std::move(m)),
        on_state(std::move(s)),
        tls_ctx(make_tls_context(opts.redis)),
        address(opts.redis.host + ":" + std::to_string(opts.redis.port)) {}

  const subscriber_options opts;
  const message_fn on_message;
  const state_fn on_state;

  // Shared with other threads.
  std::atomic<bool> stopped{false};
  std::atomic<bool> is_subscribed{false};
  std::atomic<std::uint64_t> resubscriptions{0};
  mutable std::mutex error_mu;
  std::string last_error; ///< guarded by error_mu
  std::mutex stop_mu;     ///< held through stop(), so a second caller waits for the join
  std::thread thread;

  // The loop's own. io is declared first: every I/O object below must die before it.
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> work{io.get_executor()};
  const std::unique_ptr<ssl::context> tls_ctx; ///< rediss:// only
  const std::string address;                   ///< host:port, for last_error
  tcp::resolver resolver{io};
  tcp::socket socket{io};
  /// TLS over `socket`, made anew per connect. Each handler of an operation on it holds a
  /// reference: close_socket() drops ours while operations are in flight, and the stream must
  /// outlive them.
  std::shared_ptr<ssl::stream<tcp::socket&>> tls;
  asio::steady_timer deadline{io}; ///< connect + handshake, then each PING's reply
  asio::steady_timer tick{io};     ///< reconnect backoff, then the PING interval
  reader_ptr reader{nullptr, redisReaderFree};
  std::array<char, std::size_t{16} * 1024> rbuf{};
  std::string out, wbuf; ///< commands not yet written / being written
  enum class step { idle, connecting, tls_handshake, subscribing, subscribed };
  step phase = step::idle;
  std::uint64_t gen = 0; ///< changes with every socket: handlers of an old one do nothing
  bool writing = false;
  bool auth_pending = false; ///< the first reply answers AUTH
  bool ping_pending = false; ///< a PING is out and nothing arrived since
  bool ever_subscribed = false;
  std::int64_t failures = 0; ///< connects failed in a row, for the backoff
  std::minstd_rand rng{std::random_device{}()};

  /// Wraps a completion handler so that it runs only for the current socket and before stop().
  template <class F>
  auto guard(F f) {
    return [this, g = gen, f = std::move(f)](auto&&... a) mutable {
      if (!stopped.load(std::memory_order_acquire) && g == gen)
        f(std::forward<decltype(a)>(a)...);
    };
  }

  void set_error(std::string why) {
    std::lock_guard<std::mutex> lk(error_mu);
    last_error = std::move(why);
  }

  /// Runs a user callback on this thread; it never sees stop() returned (the thread is joined
  /// first) and its exceptions end here, not in Asio.
  template <class F, class... A>
  void call(const F& f, A&&... a) {
    if (!f || stopped.load(std::memory_order_acquire))
      return;
    try {
      f(std::forward<A>(a)...);
    } catch (...) { // NOLINT(bugprone-empty-catch): a callback's failure must not end the loop
    }
  }

  void connect();
  void on_connected();
  void send_subscribe();
  void send(std::initializer_list<std::string_view> args);
  void flush();
  void read_loop();
  void on_read(std::size_t n);
  void on_reply(const redisReply& r);
  void on_handshake_reply(const redisReply& r);
  void mark_subscribed();
  void schedule_ping();
  void send_ping();
  void fail(std::string why);
  void close_socket();
  void schedule_reconnect();
  void shutdown();
};

// --- connecting ---------------------------------------------------------------------------

/// Resolve, TCP connect, TLS, AUTH and SUBSCRIBE all within one connect_timeout: a server that
/// accepts and never answers costs one deadline, then the backoff.
void subscriber::impl::connect() {
  phase = step::connecting;
  ++gen;
  reader = reader_ptr(redisReaderCreate(), redisReaderFree);
  if (!reader)
    return fail("out of memory for the reply reader");
  auto limit = opts.redis.connect_timeout;
  deadline.expires_after(limit);
  deadline.async_wait(guard([this, limit](error_code ec) {
    if (ec || phase == step::subscribed)
      return;
    const char* where = phase == step::connecting      ? "TCP connect"
                        : phase == step::tls_handshake ? "TLS handshake"
                                                       : "no answer to SUBSCRIBE";
    fail("no subscription to " + address + " within the connect timeout of " +
         std::to_string(limit.count()) + " ms (" + where + ")");
  }));
  resolver.async_resolve(
      opts.redis.host, std::to_string(opts.redis.port),
      guard([this](error_code ec, const tcp::resolver::results_type& eps) {
        if (ec)
          return fail("cannot resolve " + opts.redis.host + ": " + ec.message());
        asio::async_connect(socket, eps, guard([this](error_code ec2, const tcp::endpoint&) {
                              if (ec2)
                                return fail("cannot connect to " + address + ": " + ec2.message());
                              on_connected();
                            }));
      }));
}

void subscriber::impl::on_connected() {
  error_code ignored;
  socket.set_option(tcp::no_delay(true), ignored);
  socket.set_option(asio::socket_base::keep_alive(true), ignored);
  if (!tls_ctx)
    return send_subscribe();
  phase = step::tls_handshake;
  tls = std::make_shared<ssl::stream<tcp::socket&>>(socket, *tls_ctx);
  SSL_set_tlsext_host_name(tls->native_handle(), opts.redis.host.c_str());
  tls->async_handshake(ssl::stream_base::client, guard([this, keep = tls](error_code ec) {
                         if (ec)
                           return fail("TLS handshake with " + address +
                                       " failed: " + ec.message());
                         send_subscribe();
                       }));
}

/// AUTH (when a password is set) and SUBSCRIBE in one write. No SELECT: channels are global.
void subscriber::impl::send_subscribe() {
  phase = step::subscribing;
  read_loop();
  auth_pending = !opts.redis.password.empty();
  if (auth_pending)
    send({"AUTH", opts.redis.password});
  send({"SUBSCRIBE", opts.channel});
  flush();
}

// --- writing -------------------------------------------------------------------------------

void subscriber::impl::send(std::initializer_list<std::string_view> args) {
  std::array<const char*, 2> argv{};
  std::array<std::size_t, 2> lens{};
  std::size_t n = 0;
  for (auto a : args) {
    argv.at(n) = a.data();
    lens.at(n++) = a.size();
  }
  redis::append_command(out, n, argv.data(), lens.data());
}

/// Writes what is pending unless a write is in flight; what comes meanwhile goes next.
void subscriber::impl::flush() {
  if (writing || out.empty())
    return;
  std::swap(out, wbuf);
  writing = true;
  auto done = guard([this, keep = tls](error_code ec, std::size_t) {
    writing = false;
    if (ec)
      return fail("cannot write to " + address + ": " + ec.message());
    wbuf.clear();
    flush();
  });
  if (tls)
    asio::async_write(*tls, asio::buffer(wbuf), std::move(done));
  else
    asio::async_write(socket, asio::buffer(wbuf), std::move(done));
}

// --- reading -------------------------------------------------------------------------------

void subscriber::impl::read_loop() {
  auto done = guard([this, keep = tls](error_code ec, std::size_t n) {
    if (ec)
      return fail(address + " closed the connection: " + ec.message());
    on_read(n);
  });
  if (tls)
    tls->async_read_some(asio::buffer(rbuf), std::move(done));
  else
    socket.async_read_some(asio::buffer(rbuf), std::move(done));
}

void subscriber::impl::on_read(std::size_t n) {
  std::uint64_t g = gen;
  if (redisReaderFeed(reader.get(), rbuf.data(), n) != REDIS_OK)
    return fail("unparsable reply from " + address + ": " + reader->errstr);
  for (;;) {
    void* obj = nullptr;
    if (redisReaderGetReply(reader.get(), &obj) != REDIS_OK)
      return fail("unparsable reply from " + address + ": " + reader->errstr);
    if (obj == nullptr)
      break;
    reply_ptr r(static_cast<redisReply*>(obj));
    on_reply(*r);
    if (g != gen || stopped.load(std::memory_order_acquire))
      return; // the reply failed the connection, or a callback called stop()
  }
  read_loop();
}

void subscriber::impl::on_reply(const redisReply& r) {
  if (phase != step::subscribed)
    return on_handshake_reply(r);
  ping_pending = false; // anything at all shows the connection alive
  if (is_push(r, "message", 3) && r.element[2]->type == REDIS_REPLY_STRING) {
    if (text(*r.element[1]) == opts.channel)
      call(on_message, text(*r.element[2]));
    return;
  }
  if (is_push(r, "pong", 1))
    return;
  if (r.type == REDIS_REPLY_ERROR)
    return fail(address + " answered an error: " + std::string(text(r)));
  fail("unexpected reply from " + address + " in subscribed mode (type " + std::to_string(r.type) +
       ")");
}

void subscriber::impl::on_handshake_reply(const redisReply& r) {
  if (auth_pending) {
    auth_pending = false;
    if (r.type == REDIS_REPLY_ERROR)
      fail(address + " refused AUTH: " + std::string(text(r)));
    return;
  }
  if (r.type == REDIS_REPLY_ERROR)
    return fail(address + " refused SUBSCRIBE: " + std::string(text(r)));
  if (!is_push(r, "subscribe", 3) || text(*r.element[1]) != opts.channel)
    return fail("unexpected answer to SUBSCRIBE from " + address);
  mark_subscribed();
}

void subscriber::impl::mark_subscribed() {
  deadline.cancel();
  phase = step::subscribed;
  failures = 0;
  set_error("");
  if (ever_subscribed)
    ++resubscriptions;
  ever_subscribed = true;
  is_subscribed.store(true, std::memory_order_release);
  call(on_state, true);
  schedule_ping();
}

// --- liveness --------------------------------------------------------------------------------
// A PING every ping_interval, none while one is unanswered. Its deadline checks that nothing
// arrived since it was sent, so a reply that raced the timer is not mistaken for silence.

void subscriber::impl::schedule_ping() {
  tick.expires_after(opts.ping_interval);
  tick.async_wait(guard([this](error_code ec) {
    if (ec)
      return;
    if (!ping_pending)
      send_ping();
    schedule_ping();
  }));
}

void subscriber::impl::send_ping() {
  ping_pending = true;
  send({"PING"});
  flush();
  auto limit = opts.redis.command_timeout;
  deadline.expires_after(limit);
  deadline.async_wait(guard([this, limit](error_code ec) {
    if (!ec && ping_pending && deadline.expiry() <= asio::steady_timer::clock_type::now())
      fail("no reply to PING from " + address + " within " + std::to_string(limit.count()) + " ms");
  }));
}

// --- failing and reconnecting -------------------------------------------------------------

/// Drops the connection, says why, reports a lost subscription and reconnects after the backoff.
void subscriber::impl::fail(std::string why) {
  bool was_subscribed = phase == step::subscribed;
  close_socket();
  set_error(std::move(why));
  if (was_subscribed) {
    is_subscribed.store(false, std::memory_order_release);
    call(on_state, false);
  }
  schedule_reconnect();
}

void subscriber::impl::close_socket() {
  ++gen;
  phase = step::idle;
  error_code ignored;
  socket.close(ignored);
  tls.reset();
  resolver.cancel();
  deadline.cancel();
  tick.cancel();
  writing = ping_pending = auth_pending = false;
  out.clear();
  wbuf.clear();
}

/// reconnect_min, doubling per failure up to reconnect_max, each drawn from [d/2, d] and never
/// below reconnect_min, so that nodes that lost Redis together do not come back in step.
void subscriber::impl::schedule_reconnect() {
  model::backoff_policy p{opts.redis.reconnect_min.count(), opts.redis.reconnect_max.count()};
  auto d = model::backoff_delay_ms(p, ++failures, std::uniform_real_distribution<>(0, 1)(rng));
  tick.expires_after(std::chrono::milliseconds(std::max(d, p.min_ms)));
  tick.async_wait(guard([this](error_code ec) {
    if (!ec)
      connect();
  }));
}

/// After the thread is joined: closes everything and runs the aborted handlers (each does
/// nothing, `stopped` being set), so the TLS stream they hold goes now.
void subscriber::impl::shutdown() {
  close_socket();
  work.reset();
  io.restart();
  io.poll();
}

// --- subscriber ----------------------------------------------------------------------------

subscriber::subscriber(subscriber_options opts, message_fn on_message, state_fn on_state)
    : impl_(std::make_unique<impl>(std::move(opts), std::move(on_message), std::move(on_state))) {}

subscriber::~subscriber() {
  stop();
}

void subscriber::start() {
  if (impl_->io.get_executor().running_in_this_thread())
    return; // from a callback: it runs already (and a stop() may hold stop_mu, joining)
  std::lock_guard<std::mutex> lk(impl_->stop_mu);
  if (impl_->stopped || impl_->thread.joinable())
    return;
  impl_->thread = std::thread([d = impl_.get()] {
    asio::post(d->io, [d] {
      if (!d->stopped)
        d->connect();
    });
    for (;;) {
      try {
        d->io.run(); // returns at stop() only: `work` keeps it busy
        return;
      } catch (const std::exception& e) { // only allocation can throw: start over, keep the loop
        try {
          d->fail(std::string("cache subscriber: ") + e.what());
        } catch (...) { // NOLINT(bugprone-empty-catch): out of memory twice; the loop goes on
        }
      }
    }
  });
}

void subscriber::stop() {
  auto& d = *impl_;
  // From a callback (on the thread itself) it can only end the loop; the destructor joins.
  bool on_own_thread = d.io.get_executor().running_in_this_thread();
  std::unique_lock<std::mutex> lk(d.stop_mu, std::defer_lock);
  if (!on_own_thread)
    lk.lock();
  d.stopped.store(true, std::memory_order_release);
  d.is_subscribed.store(false, std::memory_order_release);
  d.io.stop();
  if (on_own_thread || !d.thread.joinable())
    return;
  d.thread.join();
  d.shutdown();
}

bool subscriber::subscribed() const {
  return impl_->is_subscribed.load(std::memory_order_acquire);
}

std::uint64_t subscriber::resubscriptions() const {
  return impl_->resubscriptions.load();
}

std::string subscriber::last_error() const {
  std::lock_guard<std::mutex> lk(impl_->error_mu);
  return impl_->last_error;
}

} // namespace sessiond::cache
