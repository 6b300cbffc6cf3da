// Test support for integration tests: a blocking HTTP/1.1 keep-alive client with timeouts, an
// in-process sessiond node on a free port, and a private redis-server the test can stop.
#pragma once

#include "adapters/redis/blocking.hpp"
#include "adapters/redis/client.hpp"
#include "app/node.hpp"
#include "config/config.hpp"
#include "io_threads.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <catch2/catch.hpp>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <future>
#include <istream>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace sessiond::test {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = boost::asio::ip::tcp;

struct reply {
  int status = 0;
  std::string body;
  std::map<std::string, std::string> headers;
  std::string header(const std::string& k) const {
    auto it = headers.find(k);
    return it == headers.end() ? "" : it->second;
  }
};

/// One keep-alive connection; each call blocks up to `timeout` for the answer.
class client {
public:
  explicit client(std::uint16_t port, std::chrono::milliseconds timeout = std::chrono::seconds(10))
      : socket_(io_) {
    socket_.connect(tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), port));
    timeval tv{static_cast<time_t>(timeout.count() / 1000),
               static_cast<suseconds_t>((timeout.count() % 1000) * 1000)};
    setsockopt(socket_.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  }

  reply call(bhttp::verb verb, const std::string& target, const std::string& body = "",
             std::map<std::string, std::string> headers = {}) {
    bhttp::request<bhttp::string_body> req{verb, target, 11};
    req.set(bhttp::field::host, "127.0.0.1");
    if (!body.empty() && headers.find("Content-Type") == headers.end())
      req.set(bhttp::field::content_type, "application/json");
    for (auto& [k, v] : headers)
      req.set(k, v);
    req.body() = body;
    req.prepare_payload();
    bhttp::write(socket_, req);
    bhttp::response_parser<bhttp::string_body> parser;
    parser.body_limit(64 << 20);
    if (verb == bhttp::verb::head)
      parser.skip(true);
    bhttp::read(socket_, buffer_, parser);
    auto& res = parser.get();
    reply out;
    out.status = static_cast<int>(res.result_int());
    out.body = res.body();
    for (auto& f : res)
      out.headers[std::string(f.name_string())] = std::string(f.value());
    return out;
  }

  reply get(const std::string& t, std::map<std::string, std::string> h = {}) {
    return call(bhttp::verb::get, t, "", std::move(h));
  }
  reply put(const std::string& t, const std::string& b, std::map<std::string, std::string> h = {}) {
    return call(bhttp::verb::put, t, b, std::move(h));
  }
  reply patch(const std::string& t, const std::string& b,
              std::map<std::string, std::string> h = {}) {
    h.emplace("Content-Type", "application/merge-patch+json");
    return call(bhttp::verb::patch, t, b, std::move(h));
  }
  reply del(const std::string& t, std::map<std::string, std::string> h = {}) {
    return call(bhttp::verb::delete_, t, "", std::move(h));
  }

private:
  boost::asio::io_context io_;
  tcp::socket socket_;
  beast::flat_buffer buffer_;
};

inline std::string env_or_fail(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v)
    FAIL(std::string(name) + " is not set: run the integration tests through scripts/test, "
                             "which starts Redis and PostgreSQL and exports it");
  return v;
}

/// A key prefix no other test run uses, so tests share one Redis without seeing each other.
inline std::string unique_prefix() {
  std::random_device rd;
  return "t" + std::to_string(getpid()) + "-" + std::to_string(rd() % 1000000) + ":";
}

/// The defaults with a free port, the test Redis and a fresh key prefix.
inline config::config test_config(const std::string& redis_url = env_or_fail("REDIS_URL")) {
  auto c = config::load_string("", {});
  c.http.listen = "127.0.0.1:0";
  c.redis.url = redis_url;
  c.redis.key_prefix = unique_prefix();
  c.sessions.shards = 4;
  return c;
}

/// A free loopback port (bind to 0, read, close).
inline std::uint16_t free_port() {
  boost::asio::io_context io;
  tcp::acceptor a(io, tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0));
  return a.local_endpoint().port();
}

/// A redis-server child process of the test's own, on a free port.
class private_redis {
public:
  /// `extra`: more redis-server options ("--maxmemory-policy", "allkeys-lru", …), which
  /// replace the defaults below (no persistence) where they name the same option.
  explicit private_redis(std::vector<std::string> extra = {})
      : port_(free_port()), extra_(std::move(extra)) {
    start();
  }
  ~private_redis() { stop(); }

  void start() {
    pid_ = fork();
    if (pid_ == 0) {
      int devnull = open("/dev/null", O_WRONLY);
      dup2(devnull, 1);
      dup2(devnull, 2);
      const char* bin = std::getenv("REDIS_SERVER_BIN");
      std::string b = bin && *bin ? bin : "redis-server";
      std::string port = std::to_string(port_);
      std::vector<std::string> args{b,  "--port",       port, "--bind",     "127.0.0.1", "--save",
                                    "", "--appendonly", "no", "--loglevel", "warning"};
      args.insert(args.end(), extra_.begin(), extra_.end());
      std::vector<char*> argv;
      for (auto& a : args)
        argv.push_back(a.data());
      argv.push_back(nullptr);
      execvp(b.c_str(), argv.data());
      _exit(127);
    }
    wait_until_listening();
  }

  void stop() {
    if (pid_ <= 0)
      return;
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_) + "/0"; }
  std::uint16_t port() const { return port_; }

  /// Sends one command over a socket of its own and returns the first line of the reply, e.g.
  /// "+OK" (sessiond's client refuses to talk to a replica, so tests reach one this way).
  std::string raw(const std::vector<std::string>& args) const {
    boost::asio::io_context io;
    tcp::socket s(io);
    s.connect(tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), port_));
    std::string cmd = "*" + std::to_string(args.size()) + "\r\n";
    for (const auto& a : args)
      cmd += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
    boost::asio::write(s, boost::asio::buffer(cmd));
    boost::asio::streambuf buf;
    boost::asio::read_until(s, buf, "\r\n");
    std::string line;
    std::istream in(&buf);
    std::getline(in, line);
    if (!line.empty() && line.back() == '\r')
      line.pop_back();
    return line;
  }

  /// Holds every client's commands for `ms` (CLIENT PAUSE), so requests stay in flight.
  void pause_clients(int ms) const {
    boost::asio::io_context io;
    tcp::socket s(io);
    s.connect(tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), port_));
    auto arg = std::to_string(ms);
    std::string cmd = "*3\r\n$6\r\nCLIENT\r\n$5\r\nPAUSE\r\n$" + std::to_string(arg.size()) +
                      "\r\n" + arg + "\r\n";
    boost::asio::write(s, boost::asio::buffer(cmd));
    char buf[16];
    s.read_some(boost::asio::buffer(buf));
  }

private:
  void wait_until_listening() {
    for (int i = 0; i < 200; ++i) {
      try {
        boost::asio::io_context io;
        tcp::socket s(io);
        s.connect(tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), port_));
        return;
      } catch (...) {
        std::this_thread::sleep_for(std::chrono::milliseconds(25));
      }
    }
    FAIL("redis-server did not start on port " + std::to_string(port_));
  }

  std::uint16_t port_;
  std::vector<std::string> extra_;
  pid_t pid_ = -1;
};

/// A Redis client of the test's own, to look at keys and change them behind the node's back.
/// Each call blocks until Redis answered (at most 10 s: then the reply is empty).
class redis_probe {
public:
  explicit redis_probe(const std::string& url) {
    redis::client_options o;
    std::string err;
    if (!redis::parse_url(url, o, err))
      FAIL("redis_probe: " + err);
    client_ = std::make_unique<redis::client>(threads_.io, o);
    client_->start();
    // On a Redis Cluster: until the topology is read and every master is connected.
    for (int i = 0; i < 500 && !client_->all_slots_connected(); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (!client_->all_slots_connected())
      FAIL("redis_probe: cannot connect to " + url);
  }
  ~redis_probe() { client_->stop(); }

  redis::reply command(std::vector<std::string> args) {
    return redis::command_wait(*client_, 0, std::move(args), std::chrono::seconds(10)).value;
  }
  /// The keys matching `pattern` on every master (KEYS sees one server's keys only).
  std::vector<std::string> keys(const std::string& pattern) {
    std::vector<std::string> out;
    for (const auto& m : client_->masters())
      for (auto& k : keys_on(m, pattern).elements)
        out.push_back(std::move(k.str));
    return out;
  }
  /// How many keys match `pattern` on each master, in masters() order.
  std::vector<std::size_t> counts(const std::string& pattern) {
    std::vector<std::size_t> out;
    for (const auto& m : client_->masters())
      out.push_back(keys_on(m, pattern).elements.size());
    return out;
  }
  redis::reply eval(const redis::script& s, std::vector<std::string> keys,
                    std::vector<std::string> args) {
    return redis::eval_wait(*client_, 0, s, std::move(keys), std::move(args),
                            std::chrono::seconds(10))
        .value;
  }

private:
  redis::reply keys_on(const std::string& master, const std::string& pattern) {
    auto p = std::make_shared<std::promise<redis::reply>>();
    auto f = p->get_future();
    client_->command_at(master, 0, {"KEYS", pattern},
                        [p](redis::errc, redis::reply&& r) { p->set_value(std::move(r)); });
    if (f.wait_for(std::chrono::seconds(10)) != std::future_status::ready)
      FAIL("redis_probe: KEYS on " + master + " did not answer");
    return f.get();
  }

  io_threads threads_; ///< declared first: outlives the client
  std::unique_ptr<redis::client> client_;
};

/// Polls `f` every 20 ms until it is true or `limit` passes.
template <class F>
bool eventually(F f, std::chrono::milliseconds limit = std::chrono::seconds(10)) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (f())
      return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return f();
}

} // namespace sessiond::test
