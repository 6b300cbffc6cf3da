// Fuzz target: raw bytes from an HTTP client over a real socket to http::server. No crash and no
// sanitizer report, and the server still answers a well-formed GET afterwards.
//
// One server on 127.0.0.1:0, its io_context on a background thread, lives for the whole process.
// Per input: connect, write the bytes, shut down the write side, read until the server closes or
// 200 ms pass. Every $FUZZ_HTTP_CHECK_EVERY inputs (default 1000, and the first) a GET must
// answer 200.
#include "adapters/http/server.hpp"
#include "fuzz/fuzz_check.hpp"

#include <arpa/inet.h>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>

namespace {

namespace asio = boost::asio;
namespace http = sessiond::http;
using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

/// The server and its I/O thread. Never destroyed: the process exits with it running.
class fixture {
public:
  fixture() : srv_(io_, options(), answer_ok) {
    port_ = srv_.start();
    thread_ = std::thread([this] { io_.run(); });
    thread_.detach();
  }
  std::uint16_t port() const { return port_; }

private:
  static http::server_options options() {
    http::server_options o;
    o.address = "127.0.0.1";
    o.port = 0;
    o.max_body_bytes = 64 << 10;
    o.header_timeout = 1000ms;
    o.idle_timeout = 1000ms;
    return o;
  }
  static void answer_ok(http::request&&, http::responder_ptr res) {
    http::response r;
    r.body = "{\"ok\":true}";
    res->send(std::move(r));
  }

  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_{io_.get_executor()};
  http::server srv_;
  std::uint16_t port_ = 0;
  std::thread thread_;
};

fixture& server() {
  static auto* f = new fixture(); // leaked on purpose: see fixture
  return *f;
}

/// A blocking client socket connected to the server, with send/receive timeouts.
class client {
public:
  explicit client(std::uint16_t port, std::chrono::milliseconds io_timeout) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    FUZZ_CHECK(fd_ >= 0);
    timeval tv{0, static_cast<suseconds_t>(io_timeout.count() * 1000)};
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    FUZZ_CHECK(::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  }
  ~client() {
    // RST instead of FIN: no TIME_WAIT pile-up over a million connections.
    linger lg{1, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    ::close(fd_);
  }
  client(const client&) = delete;
  client& operator=(const client&) = delete;

  /// Writes what the server takes (it may close early), then shuts down the write side.
  void send_all(std::string_view bytes) {
    while (!bytes.empty()) {
      auto n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n <= 0)
        break;
      bytes.remove_prefix(static_cast<std::size_t>(n));
    }
    ::shutdown(fd_, SHUT_WR);
  }

  /// Reads until the server closes or `limit` passes; returns what arrived.
  std::string read_until_close(std::chrono::milliseconds limit) {
    std::string got;
    const auto deadline = steady::now() + limit;
    char buf[4096];
    for (auto now = steady::now(); now < deadline; now = steady::now()) {
      pollfd p{fd_, POLLIN, 0};
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now);
      if (::poll(&p, 1, static_cast<int>(left.count()) + 1) <= 0)
        break;
      auto n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0)
        break;
      got.append(buf, static_cast<std::size_t>(n));
    }
    return got;
  }

private:
  int fd_ = -1;
};

std::size_t check_every() {
  const char* env = std::getenv("FUZZ_HTTP_CHECK_EVERY");
  auto n = env ? std::strtoull(env, nullptr, 10) : 1000;
  return n == 0 ? 1000 : static_cast<std::size_t>(n);
}

/// The server is still alive and well: a plain GET gets its 200.
void check_server_answers(std::uint16_t port) {
  client c(port, 2000ms);
  c.send_all("GET /healthz HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\n\r\n");
  auto reply = c.read_until_close(2000ms);
  if (reply.rfind("HTTP/1.1 200 ", 0) != 0)
    std::fprintf(stderr, "health GET answered: [%s]\n", reply.substr(0, 200).c_str());
  FUZZ_CHECK(reply.rfind("HTTP/1.1 200 ", 0) == 0);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::size_t every = check_every();
  static std::size_t inputs = 0;
  const auto port = server().port();
  {
    client c(port, 200ms);
    c.send_all(sessiond::fuzz::as_text(data, size));
    c.read_until_close(200ms);
  }
  if (inputs++ % every == 0)
    check_server_answers(port);
  return 0;
}
