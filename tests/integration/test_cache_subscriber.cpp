// Integration tests of the cache's pub/sub subscriber against the Redis at REDIS_URL and against
// private redis-servers it kills, pauses or locks with a password; and a server that never answers.
#include "adapters/cache/subscriber.hpp"
#include "support.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using sessiond::cache::subscriber;
using sessiond::cache::subscriber_options;
using sessiond::test::eventually;
using ms = std::chrono::milliseconds;
using steady = std::chrono::steady_clock;
namespace asio = boost::asio;
namespace test = sessiond::test;

namespace {

/// What the callbacks saw, read from the test thread.
struct recorder {
  mutable std::mutex mu;
  std::vector<std::string> messages;
  std::vector<bool> states;

  std::vector<std::string> got() const {
    std::lock_guard<std::mutex> lk(mu);
    return messages;
  }
  std::vector<bool> seen() const {
    std::lock_guard<std::mutex> lk(mu);
    return states;
  }
  bool has_message(const std::string& m) const {
    auto all = got();
    return std::find(all.begin(), all.end(), m) != all.end();
  }
};

/// Fast timings, so that failures and reconnects take milliseconds rather than seconds.
subscriber_options options_for(const std::string& url, const std::string& channel) {
  subscriber_options o;
  std::string error;
  if (!sessiond::redis::parse_url(url, o.redis, error))
    FAIL(url << ": " << error);
  o.redis.connect_timeout = 1000ms;
  o.redis.command_timeout = 1000ms;
  o.redis.reconnect_min = 20ms;
  o.redis.reconnect_max = 200ms;
  o.channel = channel;
  o.ping_interval = 1000ms;
  return o;
}

std::unique_ptr<subscriber> make_subscriber(subscriber_options o, recorder& rec) {
  return std::make_unique<subscriber>(
      std::move(o),
      [&rec](std::string_view payload) {
        std::lock_guard<std::mutex> lk(rec.mu);
        rec.messages.emplace_back(payload);
      },
      [&rec](bool up) {
        std::lock_guard<std::mutex> lk(rec.mu);
        rec.states.push_back(up);
      });
}

std::string channel_name(const std::string& what) {
  return test::unique_prefix() + "cache:" + what;
}

/// PUBLISH on a private redis-server (no password); the number of receivers.
std::string publish(const test::private_redis& r, const std::string& ch, const std::string& m) {
  return r.raw({"PUBLISH", ch, m});
}

ms elapsed_since(steady::time_point t0) {
  return std::chrono::duration_cast<ms>(steady::now() - t0);
}

/// Accepts TCP connections, counts them and holds them open without ever writing a byte. One
/// thread runs its loop, so the acceptor and the sockets need no lock.
struct silent_server {
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> work{io.get_executor()};
  asio::ip::tcp::acceptor acceptor{io, {asio::ip::make_address("127.0.0.1"), std::uint16_t{0}}};
  std::vector<std::unique_ptr<asio::ip::tcp::socket>> held;
  std::atomic<int> accepted{0};
  std::thread thread;

  silent_server() {
    accept();
    thread = std::thread([this] { io.run(); });
  }
  ~silent_server() {
    asio::post(io, [this] {
      boost::system::error_code ignored;
      acceptor.close(ignored);
      held.clear();
      work.reset();
    });
    thread.join();
  }
  std::uint16_t port() const { return acceptor.local_endpoint().port(); }

  void accept() {
    held.push_back(std::make_unique<asio::ip::tcp::socket>(io));
    acceptor.async_accept(*held.back(), [this](boost::system::error_code ec) {
      if (ec)
        return;
      ++accepted;
      accept();
    });
  }
};

} // namespace

TEST_CASE("messages on the channel arrive in order and other channels' do not",
          "[cache_subscriber]") {
  auto url = test::env_or_fail("REDIS_URL");
  auto ch = channel_name("order");
  recorder rec;
  auto sub = make_subscriber(options_for(url, ch), rec);
  sub->start();
  REQUIRE(eventually([&] { return !rec.seen().empty(); }, 5s));
  CHECK(rec.seen() == std::vector<bool>{true});
  CHECK(sub->subscribed());
  CHECK(sub->last_error().empty());

  test::redis_probe redis(url);
  std::vector<std::string> sent;
  for (int i = 0; i < 200; ++i) {
    sent.push_back("m" + std::to_string(i) +
                   std::string(static_cast<std::size_t>(i % 7) * 100, 'x'));
    auto r = redis.command({"PUBLISH", ch, sent.back()});
    REQUIRE(r.integer == 1); // exactly one receiver: the subscriber
    if (i % 50 == 0)
      REQUIRE(redis.command({"PUBLISH", ch + ":other", "not-for-us"}).integer == 0);
  }
  REQUIRE(redis.command({"PUBLISH", ch + "x", "not-for-us"}).integer == 0);
  sent.emplace_back(""); // an empty payload is a message too, and the last one
  REQUIRE(redis.command({"PUBLISH", ch, ""}).integer == 1);

  REQUIRE(eventually([&] { return rec.got().size() >= sent.size(); }, 5s));
  CHECK(rec.got() == sent);
  sub->stop();
  CHECK_FALSE(sub->subscribed());
  CHECK(sub->resubscriptions() == 0);
  // stop() closed the connection: Redis soon counts no receiver, and nothing more is delivered.
  CHECK(eventually([&] { return redis.command({"PUBLISH", ch, "late"}).integer == 0; }, 2s));
  CHECK(rec.got() == sent);
}

TEST_CASE("a killed subscription is reported lost, made again and delivers again",
          "[cache_subscriber]") {
  test::private_redis redis;
  auto ch = channel_name("kill");
  recorder rec;
  auto sub = make_subscriber(options_for(redis.url(), ch), rec);
  sub->start();
  REQUIRE(eventually([&] { return sub->subscribed(); }, 5s));
  REQUIRE(publish(redis, ch, "before") == ":1");
  REQUIRE(eventually([&] { return rec.has_message("before"); }, 2s));

  REQUIRE(redis.raw({"CLIENT", "KILL", "TYPE", "pubsub"}) == ":1");
  REQUIRE(eventually([&] { return rec.seen().size() >= 3; }, 2s));
  CHECK(rec.seen() == std::vector<bool>{true, false, true});
  CHECK(sub->subscribed());
  CHECK(sub->resubscriptions() == 1);
  CHECK(sub->last_error().empty());

  REQUIRE(publish(redis, ch, "after") == ":1");
  REQUIRE(eventually([&] { return rec.has_message("after"); }, 2s));
  CHECK(rec.got() == std::vector<std::string>{"before", "after"});
}

TEST_CASE("a stopped Redis is reported with its reason and resubscribed once it is back",
          "[cache_subscriber]") {
  test::private_redis redis;
  auto ch = channel_name("restart");
  recorder rec;
  auto sub = make_subscriber(options_for(redis.url(), ch), rec);
  sub->start();
  REQUIRE(eventually([&] { return sub->subscribed(); }, 5s));

  redis.stop();
  REQUIRE(eventually([&] { return rec.seen().size() >= 2; }, 2s));
  CHECK(rec.seen() == std::vector<bool>{true, false});
  CHECK_FALSE(sub->subscribed());
  auto address = "127.0.0.1:" + std::to_string(redis.port());
  // First the lost connection, then the refused reconnects.
  REQUIRE(eventually(
      [&] { return sub->last_error().find("cannot connect to " + address) != std::string::npos; },
      2s));
  CHECK(sub->last_error().find("refused") != std::string::npos);

  redis.start();
  REQUIRE(eventually([&] { return rec.seen().size() >= 3; }, 3s));
  CHECK(rec.seen() == std::vector<bool>{true, false, true});
  CHECK(sub->subscribed());
  CHECK(sub->resubscriptions() == 1);
  CHECK(sub->last_error().empty());
  REQUIRE(publish(redis, ch, "back") == ":1");
  CHECK(eventually([&] { return rec.has_message("back"); }, 2s));
}

TEST_CASE("a server that accepts and never answers costs a deadline per try, and stop() is quick",
          "[cache_subscriber]") {
  silent_server server;
  std::string url = "redis://127.0.0.1:" + std::to_string(server.port()) + "/0";
  recorder rec;
  auto opts = options_for(url, channel_name("silent"));
  opts.redis.connect_timeout = 150ms;
  auto sub = make_subscriber(opts, rec);
  sub->start();
  REQUIRE(eventually([&] { return server.accepted.load() >= 3; }, 5s));
  CHECK(sub->last_error().find("no answer to SUBSCRIBE") != std::string::npos);
  CHECK(sub->last_error().find("150 ms") != std::string::npos);
  CHECK_FALSE(sub->subscribed());
  CHECK(rec.seen().empty()); // never subscribed, so never reported lost

  auto t0 = steady::now();
  sub->stop();
  CHECK(elapsed_since(t0) < 500ms);

  SECTION("stop() does not wait for a long connect deadline") {
    auto slow = options_for(url, channel_name("silent-slow"));
    slow.redis.connect_timeout = 10s;
    recorder rec2;
    auto sub2 = make_subscriber(slow, rec2);
    int before = server.accepted.load();
    sub2->start();
    REQUIRE(eventually([&] { return server.accepted.load() > before; }, 2s));
    auto t1 = steady::now();
    sub2.reset(); // the destructor stops
    CHECK(elapsed_since(t1) < 500ms);
    CHECK(rec2.seen().empty());
  }
}

TEST_CASE("stop() is quick while waiting to reconnect, and idempotent", "[cache_subscriber]") {
  auto port = test::free_port(); // nothing listens: every connect is refused
  recorder rec;
  auto opts = options_for("redis://127.0.0.1:" + std::to_string(port) + "/0", channel_name("none"));
  opts.redis.reconnect_min = 5s;
  opts.redis.reconnect_max = 5s;
  auto sub = make_subscriber(opts, rec);
  sub->start();
  REQUIRE(eventually([&] { return !sub->last_error().empty(); }, 2s));
  CHECK(sub->last_error().find("cannot connect to 127.0.0.1:" + std::to_string(port)) !=
        std::string::npos);
  auto t0 = steady::now();
  sub->stop();
  sub->stop();
  CHECK(elapsed_since(t0) < 500ms);
  CHECK(rec.seen().empty());
}

TEST_CASE("a password-protected Redis takes the URL's password and names a missing one",
          "[cache_subscriber]") {
  test::private_redis redis({"--requirepass", "s3cret"});
  std::string base = "127.0.0.1:" + std::to_string(redis.port()) + "/0";
  auto ch = channel_name("auth");

  recorder rec;
  auto sub = make_subscriber(options_for("redis://:s3cret@" + base, ch), rec);
  sub->start();
  REQUIRE(eventually([&] { return sub->subscribed(); }, 5s));
  test::redis_probe probe("redis://:s3cret@" + base);
  REQUIRE(probe.command({"PUBLISH", ch, "authenticated"}).integer == 1);
  REQUIRE(eventually([&] { return rec.has_message("authenticated"); }, 2s));

  recorder none;
  auto without = make_subscriber(options_for("redis://" + base, ch), none);
  without->start();
  recorder wrong;
  auto mistaken = make_subscriber(options_for("redis://:wrong@" + base, ch), wrong);
  mistaken->start();
  REQUIRE(eventually([&] { return !without->last_error().empty(); }, 2s));
  CHECK(without->last_error().find("refused SUBSCRIBE") != std::string::npos);
  CHECK(without->last_error().find("NOAUTH") != std::string::npos);
  REQUIRE(eventually([&] { return !mistaken->last_error().empty(); }, 2s));
  CHECK(mistaken->last_error().find("refused AUTH") != std::string::npos);
  CHECK(mistaken->last_error().find("WRONGPASS") != std::string::npos);
  CHECK_FALSE(without->subscribed());
  CHECK_FALSE(mistaken->subscribed());
  CHECK(none.seen().empty());
  CHECK(wrong.seen().empty());
  // Only the one with the password receives.
  CHECK(probe.command({"PUBLISH", ch, "again"}).integer == 1);
}

TEST_CASE("a connection whose replies stop is found by the ping and made again",
          "[cache_subscriber]") {
  test::private_redis redis;
  auto ch = channel_name("ping");
  recorder rec;
  auto opts = options_for(redis.url(), ch);
  opts.redis.command_timeout = 300ms;
  opts.ping_interval = 200ms;
  auto sub = make_subscriber(opts, rec);
  sub->start();
  REQUIRE(eventually([&] { return sub->subscribed(); }, 5s));
  // Pings answered: still up after several intervals.
  CHECK_FALSE(eventually([&] { return !sub->subscribed(); }, 700ms));

  auto t0 = steady::now();
  redis.pause_clients(3000); // Redis holds every command, PING included, for 3 s
  REQUIRE(eventually([&] { return rec.seen().size() >= 2; }, 1500ms));
  CHECK(elapsed_since(t0) < 1500ms);
  CHECK(rec.seen() == std::vector<bool>{true, false});
  CHECK(sub->last_error().find("no reply to PING") != std::string::npos);

  // Reconnects (TCP accepted, SUBSCRIBE held) until the pause ends, then subscribes again.
  REQUIRE(eventually([&] { return rec.seen().size() >= 3; }, 6s));
  CHECK(sub->subscribed());
  CHECK(sub->resubscriptions() == 1);
  REQUIRE(publish(redis, ch, "unpaused") == ":1");
  CHECK(eventually([&] { return rec.has_message("unpaused"); }, 2s));
}

namespace {

/// A throw-away CA with a server certificate for 127.0.0.1, and a second CA that signed nothing
/// of the server's (openssl CLI, EC keys: quick to make).
struct certificates {
  std::string dir;
  certificates() {
    char tmpl[] = "/tmp/sessiond-sub-tls-XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    dir = tmpl;
    std::string ec = " -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    std::string cmds =
        "cd " + dir + " && openssl req -x509" + ec +
        " -days 2 -subj /CN=sub-ca -keyout ca.key -out ca.pem && openssl req" + ec +
        " -subj /CN=localhost -keyout server.key -out server.csr"
        " && printf 'subjectAltName=IP:127.0.0.1\\n' > ext.cnf"
        " && openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2"
        " -extfile ext.cnf -out server.pem && openssl req -x509" +
        ec + " -days 2 -subj /CN=other-ca -keyout other.key -out other.pem";
    REQUIRE(std::system(("(" + cmds + ") >/dev/null 2>&1").c_str()) == 0);
  }
  ~certificates() { std::system(("rm -rf " + dir).c_str()); }
  std::string file(const char* name) const { return dir + "/" + name; }
};

} // namespace

TEST_CASE("rediss:// subscribes over TLS, and a server it cannot verify is refused with the reason",
          "[cache_subscriber]") {
  certificates certs;
  auto tls_port = test::free_port();
  // Plain on the port private_redis picked (to publish and to see it up), TLS on tls_port.
  test::private_redis redis({"--tls-port", std::to_string(tls_port), "--tls-cert-file",
                             certs.file("server.pem"), "--tls-key-file", certs.file("server.key"),
                             "--tls-auth-clients", "no"});
  auto url = "rediss://127.0.0.1:" + std::to_string(tls_port) + "/0";
  auto ch = channel_name("tls");

  recorder rec;
  auto opts = options_for(url, ch);
  opts.redis.tls_ca_file = certs.file("ca.pem");
  auto sub = make_subscriber(opts, rec);
  sub->start();
  REQUIRE(eventually([&] { return sub->subscribed(); }, 5s));
  REQUIRE(publish(redis, ch, "over tls") == ":1");
  REQUIRE(eventually([&] { return rec.has_message("over tls"); }, 2s));

  recorder other;
  auto untrusting = options_for(url, ch);
  untrusting.redis.tls_ca_file = certs.file("other.pem");
  auto refused = make_subscriber(untrusting, other);
  refused->start();
  REQUIRE(eventually([&] { return !refused->last_error().empty(); }, 3s));
  CHECK_THAT(refused->last_error(), Catch::Contains("TLS handshake with 127.0.0.1:") &&
                                        Catch::Contains("certificate verify failed"));
  CHECK(other.seen().empty());
  CHECK(publish(redis, ch, "still one") == ":1"); // only the trusting subscriber listens

  auto missing = options_for(url, ch);
  missing.redis.tls_ca_file = certs.file("missing.pem");
  CHECK_THROWS_WITH(subscriber(missing, nullptr, nullptr),
                    Catch::Contains("cannot read the TLS CA file " + certs.file("missing.pem")));
}

TEST_CASE("callbacks that throw neither end the subscription nor lose later messages",
          "[cache_subscriber]") {
  test::private_redis redis;
  auto ch = channel_name("throw");
  recorder rec;
  subscriber sub(
      options_for(redis.url(), ch),
      [&rec](std::string_view payload) {
        {
          std::lock_guard<std::mutex> lk(rec.mu);
          rec.messages.emplace_back(payload);
        }
        throw std::runtime_error("message handler failed");
      },
      [&rec](bool up) {
        {
          std::lock_guard<std::mutex> lk(rec.mu);
          rec.states.push_back(up);
        }
        throw 42; // not even a std::exception
      });
  sub.start();
  REQUIRE(eventually([&] { return sub.subscribed(); }, 5s));
  for (const char* m : {"one", "two", "three"})
    REQUIRE(publish(redis, ch, m) == ":1");
  REQUIRE(eventually([&] { return rec.got().size() >= 3; }, 2s));
  CHECK(rec.got() == std::vector<std::string>{"one", "two", "three"});
  CHECK(rec.seen() == std::vector<bool>{true});
  CHECK(sub.subscribed());
  CHECK(sub.resubscriptions() == 0);
}
