// Integration tests of the Redis client against the Redis at REDIS_URL, and against a private
// redis-server (REDIS_SERVER_BIN) that the resilience test starts and kills itself.
#include "adapters/redis/client.hpp"
#include "io_threads.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <catch2/catch.hpp>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

using namespace sessiond::redis;
using namespace std::chrono_literals;
using ms = std::chrono::milliseconds;
using steady = std::chrono::steady_clock;
namespace asio = boost::asio;

namespace {

using sessiond::test::io_threads;

client_options env_options() {
  const char* url = std::getenv("REDIS_URL");
  if (url == nullptr) {
    FAIL("REDIS_URL is not set: run scripts/test, or start Redis and export "
         "REDIS_URL=redis://127.0.0.1:6379/0");
  }
  client_options o;
  std::string error;
  if (!parse_url(url, o, error))
    FAIL("REDIS_URL=" << url << ": " << error);
  return o;
}

std::string unique_prefix() {
  std::random_device rd;
  return "sessiond:test:redis_client:" + std::to_string(::getpid()) + ":" + std::to_string(rd()) +
         ":";
}

template <class Pred>
bool wait_until(Pred pred, ms limit) {
  auto end = steady::now() + limit;
  while (!pred()) {
    if (steady::now() > end)
      return false;
    std::this_thread::sleep_for(2ms);
  }
  return true;
}

struct result {
  errc e = errc::ok;
  reply r;
  ms took{0};
};

/// A promise-backed callback; Catch2 assertions stay on the test thread.
struct waiter {
  std::shared_ptr<std::promise<result>> p = std::make_shared<std::promise<result>>();
  std::future<result> f = p->get_future();
  steady::time_point start = steady::now();
  callback cb() {
    return [p = p, start = start](errc e, reply&& r) {
      auto took = std::chrono::duration_cast<ms>(steady::now() - start);
      p->set_value({e, std::move(r), took});
    };
  }
  result get(ms limit = 3s) {
    REQUIRE(f.wait_for(limit) == std::future_status::ready);
    return f.get();
  }
};

result call(client& c, std::vector<std::string> args, std::size_t hint = 0) {
  waiter w;
  c.command(hint, std::move(args), w.cb());
  return w.get();
}

result run(client& c, const script& s, std::vector<std::string> keys,
           std::vector<std::string> args) {
  waiter w;
  c.eval(0, s, std::move(keys), std::move(args), w.cb());
  return w.get();
}

void require_connected(client& c) {
  c.start();
  REQUIRE(wait_until([&] { return c.connected(); }, 3s));
}

long long noscript_errors(client& c) {
  auto info = call(c, {"INFO", "errorstats"}).r.str;
  auto pos = info.find("errorstat_NOSCRIPT:count=");
  return pos == std::string::npos ? 0 : std::stoll(info.substr(pos + 25));
}

} // namespace

TEST_CASE("a value SET is read back by GET, byte for byte") {
  io_threads t;
  client c(t.io, env_options());
  require_connected(c);
  auto key = unique_prefix() + "k";
  std::string value("a\0b\r\nc", 6);
  auto set = call(c, {"SET", key, value, "PX", "60000"});
  CHECK(set.e == errc::ok);
  CHECK(set.r.type == reply::kind::status);
  CHECK(set.r.str == "OK");
  auto get = call(c, {"GET", key});
  REQUIRE(get.e == errc::ok);
  CHECK(get.r.type == reply::kind::string);
  CHECK(get.r.str == value);

  waiter chained; // a callback may send the next command from its I/O thread
  c.command(0, {"SET", key, "x"}, [&c, key, cb = chained.cb()](errc, reply&&) mutable {
    c.command(0, {"GET", key}, std::move(cb));
  });
  CHECK(chained.get().r.str == "x");
}

TEST_CASE("pipelined INCRs from four threads come back in order with exact totals") {
  constexpr int lanes = 4, per_lane = 10000;
  struct lane {
    std::string key;
    int next = 0; // touched only by callbacks, which run in order on one strand
    std::atomic<int> done{0}, bad{0}, transport{0};
    std::promise<void> finished;
  };
  io_threads t;
  auto o = env_options();
  o.command_timeout = 10s; // the deepest pipeline waits for all before it (slow sanitizer builds)
  client c(t.io, o);
  require_connected(c);
  auto prefix = unique_prefix();
  std::vector<std::shared_ptr<lane>> ls;
  std::vector<std::thread> senders;
  for (int l = 0; l < lanes; ++l) {
    ls.push_back(std::make_shared<lane>());
    ls[l]->key = prefix + "incr:" + std::to_string(l);
    senders.emplace_back([&c, ln = ls[l], l] {
      for (int i = 0; i < per_lane; ++i) {
        c.command(l, {"INCR", ln->key}, [ln, i](errc e, reply&& r) {
          bool ok = e == errc::ok && r.type == reply::kind::integer && r.integer == i + 1;
          if (!ok || ln->next++ != i)
            ++ln->bad;
          ln->transport += e != errc::ok;
          if (++ln->done == per_lane)
            ln->finished.set_value();
        });
      }
    });
  }
  for (auto& s : senders)
    s.join();
  for (auto& ln : ls) {
    REQUIRE(ln->finished.get_future().wait_for(10s) == std::future_status::ready);
    INFO(ln->transport << " of the failures were transport errors");
    CHECK(ln->bad == 0);
    CHECK(call(c, {"GET", ln->key}).r.str == std::to_string(per_lane));
    call(c, {"DEL", ln->key});
  }
  CHECK(c.stats().commands >= std::uint64_t{lanes} * per_lane);
}

TEST_CASE("nil, integer, status, array and error replies are mapped") {
  io_threads t;
  client c(t.io, env_options());
  require_connected(c);
  auto key = unique_prefix() + "list";
  CHECK(call(c, {"GET", key + ":missing"}).r.type == reply::kind::nil);
  auto pushed = call(c, {"RPUSH", key, "a", "b", "c"}).r;
  CHECK(pushed.type == reply::kind::integer);
  CHECK(pushed.integer == 3);
  auto range = call(c, {"LRANGE", key, "0", "-1"}).r;
  REQUIRE(range.type == reply::kind::array);
  REQUIRE(range.elements.size() == 3);
  CHECK(range.elements[2].type == reply::kind::string);
  CHECK(range.elements[2].str == "c");
  auto empty = call(c, {"LRANGE", key + ":missing", "0", "-1"}).r;
  CHECK(empty.type == reply::kind::array);
  CHECK(empty.elements.empty());

  auto nested = call(c, {"EVAL", "return {1, 'two', {3, false}, redis.status_reply('fine')}", "0"});
  REQUIRE(nested.r.type == reply::kind::array);
  REQUIRE(nested.r.elements.size() == 4);
  CHECK(nested.r.elements[0].integer == 1);
  CHECK(nested.r.elements[1].str == "two");
  REQUIRE(nested.r.elements[2].elements.size() == 2);
  CHECK(nested.r.elements[2].elements[0].integer == 3);
  CHECK(nested.r.elements[2].elements[1].type == reply::kind::nil);
  CHECK(nested.r.elements[3].type == reply::kind::status);
  CHECK(nested.r.elements[3].str == "fine");

  auto wrong = call(c, {"INCR", key});
  CHECK(wrong.e == errc::ok); // a Redis error is a reply, not a transport failure
  CHECK(wrong.r.is_error());
  CHECK(wrong.r.str.rfind("WRONGTYPE", 0) == 0);
  CHECK(call(c, {"NO-SUCH-COMMAND"}).r.str.rfind("ERR", 0) == 0);
  auto nothing = call(c, {});
  CHECK(nothing.e == errc::ok);
  CHECK(nothing.r.is_error());
  CHECK(call(c, {"PING"}).r.str == "PONG"); // the empty command did not desync replies
  call(c, {"DEL", key});
  CHECK(c.stats().errors == 0);
}

TEST_CASE("eval runs scripts Redis has never seen, also after SCRIPT FLUSH (NOSCRIPT)") {
  io_threads t;
  // One connection: with two, the first eval could go out on connection 1 while connection 0
  // was still connecting, and the second on connection 0, which loads the script before its
  // first EVALSHA and so never sees NOSCRIPT (the flake of a fresh clone's run, issue 18).
  auto o = env_options();
  o.connections = 1;
  client c(t.io, o);
  require_connected(c);
  script echo("-- " + unique_prefix() + "\nreturn {KEYS[1], ARGV[1] .. '!', #KEYS, #ARGV}");
  REQUIRE(call(c, {"SCRIPT", "FLUSH"}).r.str == "OK");
  auto first = run(c, echo, {"k1", "k2"}, {"x"});
  REQUIRE(first.e == errc::ok);
  REQUIRE(first.r.type == reply::kind::array);
  REQUIRE(first.r.elements.size() == 4);
  CHECK(first.r.elements[0].str == "k1");
  CHECK(first.r.elements[1].str == "x!");
  CHECK(first.r.elements[2].integer == 2);
  CHECK(first.r.elements[3].integer == 1);

  // Flushed behind the connection's back: EVALSHA answers NOSCRIPT, the client loads and
  // retries once, and the caller only sees the result.
  auto before = noscript_errors(c);
  REQUIRE(call(c, {"SCRIPT", "FLUSH"}).r.str == "OK");
  auto second = run(c, echo, {"k"}, {"y"});
  REQUIRE(second.e == errc::ok);
  REQUIRE(second.r.type == reply::kind::array);
  CHECK(second.r.elements[1].str == "y!");
  CHECK(noscript_errors(c) >= before + 1);

  auto broken = run(c, script("return ("), {}, {});
  CHECK(broken.e == errc::ok);
  CHECK(broken.r.is_error());
  CHECK(broken.r.str.find("NOSCRIPT") == std::string::npos); // the compile error, not NOSCRIPT
}

TEST_CASE("a command blocked past command_timeout fails with timeout and the client recovers") {
  io_threads t;
  auto o = env_options();
  o.connections = 2;
  o.command_timeout = 300ms;
  client c(t.io, o);
  require_connected(c);
  REQUIRE(wait_until([&] { return c.stats().connections_up == 2; }, 2s));
  waiter blocked, behind;
  c.command(0, {"BLPOP", unique_prefix() + "never", "5"}, blocked.cb());
  c.command(0, {"PING"}, behind.cb());
  auto b = blocked.get();
  CHECK(b.e == errc::timeout);
  CHECK(b.took >= 280ms);
  CHECK(b.took < 800ms);
  CHECK(behind.get().e == errc::timeout); // queued behind it: its reply can no longer be matched
  CHECK(call(c, {"PING"}, 0).r.str == "PONG");
  CHECK(wait_until([&] { return c.stats().connections_up == 2; }, 2s));
  CHECK(call(c, {"PING"}, 0).r.str == "PONG");
  CHECK(c.stats().reconnects >= 1);
  CHECK(c.stats().errors == 2);
}

TEST_CASE("stop and destruction complete pending commands with closed") {
  io_threads t;
  auto c = std::make_unique<client>(t.io, env_options());
  require_connected(*c);
  waiter blocked;
  c->command(0, {"BLPOP", unique_prefix() + "never", "2"}, blocked.cb());
  std::this_thread::sleep_for(50ms);
  c->stop();
  auto b = blocked.get();
  CHECK(b.e == errc::closed);
  CHECK(b.took < 500ms);
  CHECK(call(*c, {"PING"}).e == errc::closed);
  c.reset();

  auto d = std::make_unique<client>(t.io, env_options());
  require_connected(*d);
  waiter pending;
  d->command(1, {"BLPOP", unique_prefix() + "never", "2"}, pending.cb());
  std::this_thread::sleep_for(50ms);
  d.reset(); // the io threads keep running other work
  CHECK(pending.get(1s).e == errc::closed);
}

namespace {

std::uint16_t free_port() {
  asio::io_context io;
  asio::ip::tcp::acceptor a(io, {asio::ip::make_address("127.0.0.1"), 0});
  return a.local_endpoint().port();
}

bool accepts(std::uint16_t port) {
  asio::io_context io;
  asio::ip::tcp::socket s(io);
  boost::system::error_code ec;
  s.connect({asio::ip::make_address("127.0.0.1"), port}, ec);
  return !ec;
}

/// A redis-server child process on a fixed port, killed with SIGKILL (no clean shutdown).
/// `extra` arguments come last and override the defaults (e.g. "--port 0 --tls-port N").
struct redis_process {
  std::uint16_t port;
  std::vector<std::string> extra;
  pid_t pid = -1;
  explicit redis_process(std::uint16_t p, std::vector<std::string> more = {})
      : port(p), extra(std::move(more)) {}
  ~redis_process() { kill(); }
  void start() {
    const char* env = std::getenv("REDIS_SERVER_BIN");
    std::string bin = env != nullptr ? env : "redis-server", p = std::to_string(port);
    std::vector<const char*> argv{
        bin.c_str(),    "--port", p.c_str(),     "--bind", "127.0.0.1",     "--save",       "",
        "--appendonly", "no",     "--daemonize", "no",     "--requirepass", "sessiond-test"};
    for (const auto& a : extra)
      argv.push_back(a.c_str());
    argv.push_back(nullptr);
    pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) { // only async-signal-safe calls between fork and exec
      int null = ::open("/dev/null", O_WRONLY);
      ::dup2(null, 1);
      ::dup2(null, 2);
      ::execvp(argv[0], const_cast<char* const*>(argv.data()));
      ::_exit(127);
    }
    INFO("redis-server (" << bin << ") did not accept on port " << port);
    REQUIRE(wait_until([&] { return ::waitpid(pid, nullptr, WNOHANG) == 0 && accepts(port); }, 5s));
  }
  void kill() {
    if (pid <= 0)
      return;
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    pid = -1;
  }
};

/// The on_state_change calls seen so far.
struct flip_log {
  std::mutex mu;
  std::vector<bool> seen;
  void add(bool up) {
    std::lock_guard<std::mutex> lk(mu);
    seen.push_back(up);
  }
  std::vector<bool> get() {
    std::lock_guard<std::mutex> lk(mu);
    return seen;
  }
};

} // namespace

TEST_CASE("a killed Redis fails commands fast and the client reconnects when it is back") {
  redis_process server(free_port());
  server.start();
  io_threads t;
  client_options o;
  o.port = server.port;
  o.connections = 2;
  o.connect_timeout = 500ms;
  o.reconnect_min = 20ms;
  o.reconnect_max = 300ms;
  o.password = "sessiond-test"; // AUTH and SELECT are part of every (re)connect
  o.db = 2;
  flip_log flips;
  client c(t.io, o);
  c.on_state_change([&](bool up) { flips.add(up); });
  auto flipped = [&](std::size_t n) {
    return wait_until([&] { return flips.get().size() >= n; }, 2s);
  };
  require_connected(c);
  REQUIRE(flipped(1));
  CHECK(call(c, {"SET", "k", "v"}).r.str == "OK");
  CHECK(call(c, {"CLIENT", "INFO"}).r.str.find(" db=2 ") != std::string::npos);
  auto wrong = o;
  wrong.password = "wrong";
  client refused(t.io, wrong);
  refused.start();
  std::this_thread::sleep_for(200ms);
  CHECK_FALSE(refused.connected());
  CHECK(call(refused, {"PING"}).e == errc::disconnected);

  waiter in_flight;
  c.command(0, {"BLPOP", "never", "5"}, in_flight.cb());
  std::this_thread::sleep_for(50ms);
  auto killed = steady::now();
  server.kill();
  CHECK(in_flight.get().e == errc::closed);
  REQUIRE(flipped(2));
  CHECK_FALSE(c.connected());
  CHECK(steady::now() - killed < 500ms);
  for (std::size_t hint : {0, 1, 2}) {
    auto r = call(c, {"GET", "k"}, hint);
    CHECK(r.e == errc::disconnected);
    CHECK(r.took < 100ms);
  }

  std::this_thread::sleep_for(500ms); // let the backoff reach reconnect_max
  server.start();
  auto back = steady::now();
  REQUIRE(wait_until([&] { return c.connected(); }, 3s));
  CHECK(steady::now() - back < o.reconnect_max + 200ms);
  REQUIRE(flipped(3));
  CHECK(flips.get() == std::vector<bool>{true, false, true});
  REQUIRE(wait_until([&] { return c.stats().connections_up == 2; }, 2s));
  CHECK(call(c, {"SET", "k", "w"}, 0).r.str == "OK");
  CHECK(call(c, {"GET", "k"}, 1).r.str == "w");
  CHECK(c.stats().reconnects >= 2);
}

/// Runs one command on `port` with redis-cli (the client under test refuses replicas).
std::string redis_cli(std::uint16_t port, const std::string& command) {
  std::string cmd = "redis-cli -p " + std::to_string(port) +
                    " -a sessiond-test --no-auth-warning " + command + " 2>&1";
  std::string out;
  if (FILE* f = ::popen(cmd.c_str(), "r")) {
    char buf[256];
    while (std::fgets(buf, sizeof buf, f))
      out += buf;
    ::pclose(f);
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r'))
    out.pop_back();
  return out;
}

TEST_CASE("a replica is refused at connect, and a primary that turns replica under the client is "
          "left until the address leads to a primary again") {
  redis_process primary(free_port());
  primary.start();
  redis_process other(free_port());
  other.start();
  io_threads t;
  client_options o;
  o.port = primary.port;
  o.password = "sessiond-test";
  o.connections = 1;
  o.reconnect_min = 20ms;
  o.reconnect_max = 100ms;
  client c(t.io, o);
  require_connected(c);
  CHECK(c.last_error().empty());
  CHECK(call(c, {"SET", "k", "1"}).r.str == "OK");

  // The primary becomes a replica under an open connection (the old primary after a failover):
  // the next write answers READONLY and the client drops the connection.
  REQUIRE(redis_cli(primary.port, "CONFIG SET masterauth sessiond-test") == "OK");
  REQUIRE(redis_cli(primary.port, "REPLICAOF 127.0.0.1 " + std::to_string(other.port)) == "OK");
  auto refused = call(c, {"SET", "k", "2"});
  CHECK(refused.e == errc::ok);
  CHECK(refused.r.str.rfind("READONLY ", 0) == 0);
  REQUIRE(wait_until([&] { return !c.connected(); }, 2s));
  // Reconnecting finds a replica again (ROLE in the handshake): it stays down and says why.
  std::this_thread::sleep_for(300ms);
  CHECK_FALSE(c.connected());
  CHECK(c.last_error() == "127.0.0.1:" + std::to_string(primary.port) +
                              " is a read-only replica (ROLE slave): reconnecting until the "
                              "address leads to the primary");
  CHECK(call(c, {"GET", "k"}).e == errc::disconnected);

  // Promoted again: the client is back by itself.
  REQUIRE(redis_cli(primary.port, "REPLICAOF NO ONE") == "OK");
  REQUIRE(wait_until([&] { return c.connected(); }, 3s));
  CHECK(c.last_error().empty());
  CHECK(call(c, {"SET", "k", "3"}).r.str == "OK");
}

TEST_CASE("a Redis loading its dataset is not a connection: the client waits for PING to answer") {
  char dir_template[] = "/tmp/sessiond-loading-XXXXXX";
  REQUIRE(::mkdtemp(dir_template) != nullptr);
  std::string dir = dir_template;
  std::uint16_t port = free_port();
  {
    redis_process seed(port, {"--dir", dir, "--enable-debug-command", "yes"});
    seed.start();
    REQUIRE(redis_cli(port, "DEBUG POPULATE 20000 k 100") == "OK");
    REQUIRE(redis_cli(port, "SAVE") == "OK");
  }
  // 20,000 keys at 200 us each: loading takes seconds, and Redis answers meanwhile.
  redis_process server(port, {"--dir", dir, "--key-load-delay", "200",
                              "--loading-process-events-interval-bytes", "1024"});
  server.start();
  REQUIRE(redis_cli(port, "PING").rfind("LOADING", 0) == 0);
  io_threads t;
  client_options o;
  o.port = port;
  o.password = "sessiond-test";
  o.connections = 1;
  o.reconnect_min = 20ms;
  o.reconnect_max = 100ms;
  client c(t.io, o);
  c.start();
  std::this_thread::sleep_for(300ms);
  CHECK_FALSE(c.connected());
  CHECK(c.last_error() == "127.0.0.1:" + std::to_string(port) +
                              " refused the connection: LOADING Redis is loading the dataset in "
                              "memory");
  REQUIRE(wait_until([&] { return c.connected(); }, 30s));
  auto v = call(c, {"GET", "k:19999"}).r.str; // DEBUG POPULATE pads values with NULs
  CHECK(v.size() == 100);
  CHECK(v.rfind("value:19999", 0) == 0);
  std::system(("rm -rf " + dir).c_str());
}

namespace {

/// A throw-away CA, a server certificate for 127.0.0.1 and localhost and a client certificate
/// under that CA (openssl CLI), and a redis_process serving TLS only with them; with
/// `require_client_certificates`, it accepts only clients that show a certificate of that CA
/// (`tls-auth-clients yes`).
class tls_redis {
public:
  explicit tls_redis(bool require_client_certificates = false)
      : tls_redis(free_port(), require_client_certificates) {}
  ~tls_redis() {
    server_.kill();
    std::system(("rm -rf " + dir_).c_str());
  }
  client_options options(const std::string& ca_file, const std::string& host = "127.0.0.1") {
    client_options o;
    std::string error;
    REQUIRE(parse_url("rediss://:sessiond-test@" + host + ":" + std::to_string(port()) + "/0", o,
                      error));
    o.tls_ca_file = ca_file;
    o.connect_timeout = 2s;
    o.command_timeout = 5s; // sanitizer builds are slow
    return o;
  }
  std::string file(const char* name) const { return dir_ + "/" + name; }
  std::uint16_t port() const { return server_.port; }

private:
  tls_redis(std::uint16_t port, bool require_client_certificates)
      : dir_(make_certificates()),
        server_(port, tls_arguments(dir_, port, require_client_certificates)) {
    server_.start();
  }

  static std::string make_certificates() {
    char tmpl[] = "/tmp/sessiond-tls-XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    std::string dir = tmpl;
    std::string cmds =
        "cd " + dir +
        " && openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=sessiond-test-ca"
        " -keyout ca.key -out ca.pem"
        " && openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout server.key"
        " -out server.csr"
        " && printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > ext.cnf"
        " && openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2"
        " -extfile ext.cnf -out server.pem"
        " && openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=other-ca"
        " -keyout other.key -out other.pem"
        " && openssl req -newkey rsa:2048 -nodes -subj /CN=sessiond-node -keyout client.key"
        " -out client.csr"
        " && openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2"
        " -out client.pem"
        " && openssl pkey -in client.key -aes256 -passout pass:secret -out client-encrypted.key";
    REQUIRE(std::system(("(" + cmds + ") >/dev/null 2>&1").c_str()) == 0);
    return dir;
  }
  /// TLS only, on `port` (the plain port off); also on 127.0.0.2, an address the certificate
  /// does not name.
  static std::vector<std::string> tls_arguments(const std::string& dir, std::uint16_t port,
                                                bool require_client_certificates) {
    return {"--port",
            "0",
            "--tls-port",
            std::to_string(port),
            "--bind",
            "127.0.0.1",
            "127.0.0.2",
            "--tls-cert-file",
            dir + "/server.pem",
            "--tls-key-file",
            dir + "/server.key",
            "--tls-ca-cert-file",
            dir + "/ca.pem",
            "--tls-auth-clients",
            require_client_certificates ? "yes" : "no"};
  }

  std::string dir_;
  redis_process server_;
};

} // namespace

TEST_CASE("rediss:// talks TLS to Redis: commands, pipelining and scripts work over it") {
  tls_redis server;
  io_threads t;
  client c(t.io, server.options(server.file("ca.pem")));
  require_connected(c);
  // Both connections up: commands for a connection that is down go to the other one, and the
  // order checked below holds on one connection only.
  REQUIRE(wait_until([&] { return c.stats().connections_up == 2; }, 5s));
  CHECK(c.last_error().empty());
  CHECK(call(c, {"SET", "tls:k", std::string(40000, 'x')}).r.str == "OK");
  std::vector<waiter> many(200);
  for (std::size_t i = 0; i < many.size(); ++i)
    c.command(0, {"INCR", "tls:n"}, many[i].cb());
  for (std::size_t i = 0; i < many.size(); ++i)
    CHECK(many[i].get().r.integer == static_cast<long long>(i + 1));
  CHECK(call(c, {"GET", "tls:k"}).r.str.size() == 40000);
  script s{"return redis.call('GET', KEYS[1])"};
  CHECK(run(c, s, {"tls:n"}, {}).r.str == "200");
}

TEST_CASE("rediss:// to a server that asks for client certificates: the configured one gets "
          "in, none or one of another CA does not, and an unusable file stops the client") {
  tls_redis server(true);
  io_threads t;
  auto with = [&](const std::string& cert, const std::string& key) {
    auto o = server.options(server.file("ca.pem"));
    o.tls_cert_file = cert.empty() ? cert : server.file(cert.c_str());
    o.tls_key_file = key.empty() ? key : server.file(key.c_str());
    return o;
  };
  SECTION("the client certificate of the server's CA") {
    client c(t.io, with("client.pem", "client.key"));
    require_connected(c);
    CHECK(call(c, {"SET", "tls:client", "yes"}).r.str == "OK");
    CHECK(call(c, {"GET", "tls:client"}).r.str == "yes");
    CHECK(c.last_error().empty());
  }
  SECTION("no client certificate") {
    client c(t.io, with("", ""));
    c.start();
    CHECK_FALSE(wait_until([&] { return c.connected(); }, 1500ms));
    CHECK(call(c, {"PING"}).e == errc::disconnected);
    // TLS 1.3: the server says so after the TLS handshake, in an alert the handshake reads.
    CHECK_THAT(c.last_error(), Catch::Contains("closed the connection during the handshake") &&
                                   Catch::Contains("certificate required"));
  }
  SECTION("a certificate of another CA") {
    client c(t.io, with("other.pem", "other.key"));
    c.start();
    CHECK_FALSE(wait_until([&] { return c.connected(); }, 1500ms));
    CHECK_THAT(c.last_error(), Catch::Contains("unknown ca"));
  }
  SECTION("files that cannot be used") {
    CHECK_THROWS_WITH(client(t.io, with("missing.pem", "client.key")),
                      Catch::Contains("cannot read the TLS client certificate file " +
                                      server.file("missing.pem")));
    CHECK_THROWS_WITH(client(t.io, with("client.pem", "missing.key")),
                      Catch::Contains("cannot read the TLS client key file"));
    CHECK_THROWS_WITH(client(t.io, with("ext.cnf", "client.key")), // not PEM
                      Catch::Contains("cannot load the TLS client certificate from"));
    // A key of another certificate, and an encrypted key (no passphrase prompt: it fails).
    CHECK_THROWS_WITH(
        client(t.io, with("client.pem", "other.key")),
        Catch::Contains("cannot load the TLS client key from " + server.file("other.key")));
    CHECK_THROWS_WITH(client(t.io, with("client.pem", "client-encrypted.key")),
                      Catch::Contains("cannot load the TLS client key from"));
    CHECK_THROWS_WITH(client(t.io, with("client.pem", "")), Catch::Contains("set both or neither"));
  }
}

TEST_CASE("a TLS connection dropped with a read in flight reconnects and serves again") {
  tls_redis server;
  io_threads t;
  auto o = server.options(server.file("ca.pem"));
  o.command_timeout = 300ms;
  client c(t.io, o);
  require_connected(c);
  for (int round = 0; round < 5; ++round) { // each timeout drops the socket under a pending read
    waiter blocked;
    c.command(0, {"BLPOP", "tls:never", "5"}, blocked.cb());
    CHECK(blocked.get().e == errc::timeout);
    REQUIRE(wait_until([&] { return call(c, {"PING"}).r.str == "PONG"; }, 3s));
  }
  CHECK(wait_until([&] { return c.stats().reconnects >= 5; }, 3s)); // the last one may be under way
}

TEST_CASE("rediss:// refuses a server it cannot verify and says why; redis:// gets nothing") {
  tls_redis server;
  io_threads t;
  SECTION("a certificate from another CA") {
    client c(t.io, server.options(server.file("other.pem")));
    c.start();
    CHECK_FALSE(wait_until([&] { return c.connected(); }, 1500ms));
    CHECK(call(c, {"PING"}).e == errc::disconnected);
    CHECK(c.last_error().find("TLS handshake with 127.0.0.1:" + std::to_string(server.port())) !=
          std::string::npos);
  }
  SECTION("a certificate that does not name the host") {
    auto o = server.options(server.file("ca.pem"));
    o.host = "127.0.0.2"; // the same server, at an address the certificate does not name
    client c(t.io, o);
    c.start();
    CHECK_FALSE(wait_until([&] { return c.connected(); }, 1500ms));
    CHECK_FALSE(c.last_error().empty());
  }
  SECTION("plain redis:// to the TLS port") {
    client_options o;
    std::string error;
    REQUIRE(parse_url("redis://127.0.0.1:" + std::to_string(server.port()) + "/0", o, error));
    o.connect_timeout = 500ms;
    client c(t.io, o);
    c.start();
    CHECK_FALSE(wait_until([&] { return c.connected(); }, 1500ms));
  }
  SECTION("a CA file that cannot be read stops the client at construction") {
    CHECK_THROWS_WITH(client(t.io, server.options("/nonexistent/ca.pem")),
                      Catch::Contains("cannot read the TLS CA file /nonexistent/ca.pem"));
    CHECK_THROWS_WITH(client(t.io, server.options(server.file("ext.cnf"))), // not PEM
                      Catch::Contains("cannot load the TLS CA certificates from"));
  }
}
