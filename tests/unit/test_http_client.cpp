// Unit tests of the HTTP client against a scripted server on 127.0.0.1:0 (a thread per
// connection, plain or TLS with a throw-away CA from the openssl CLI); the client's io runs on
// two threads and every wait for a callback has a bound.
#include "adapters/http/client.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <catch2/catch.hpp>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <fstream>
#include <future>
#include <list>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
namespace bhttp = boost::beast::http;
using namespace std::chrono_literals;
using boost::system::error_code;
using ms = std::chrono::milliseconds;
using tcp = asio::ip::tcp;
using sessiond::http::client;
using sessiond::http::client_errc;
using sessiond::http::client_options;
using sessiond::http::incoming_response;
using sessiond::http::outgoing_request;
using sessiond::http::parse_http_url;
using sessiond::http::parsed_url;

/// A request the test server read: on which connection (accept order) and which on it.
struct seen {
  std::size_t conn = 0;
  std::size_t nth = 0;
  bhttp::request<bhttp::string_body> req;
};

/// How the test server answers one request.
struct answer {
  std::vector<std::string> parts; ///< written `gap` apart; none: close without an answer
  ms delay{0};                    ///< before the first part
  ms gap{0};
  bool close = false; ///< close the connection after writing
};
using script = std::function<answer(const seen&)>;

answer ok(const std::string& body, const std::string& extra_headers = "", unsigned status = 200) {
  return {{"HTTP/1.1 " + std::to_string(status) + " X\r\nContent-Type: text/plain\r\n" +
           "Content-Length: " + std::to_string(body.size()) + "\r\n" + extra_headers + "\r\n" +
           body}};
}

answer drop() {
  return {};
}

/// A scripted HTTP/1.1 server, TLS when given a context. Blocking sockets, a thread per
/// connection; the destructor shuts every socket down, which wakes the blocked threads.
class test_server {
public:
  explicit test_server(script s, ssl::context* tls = nullptr)
      : script_(std::move(s)), tls_(tls), acceptor_(io_, {asio::ip::make_address("127.0.0.1"), 0}) {
    port_ = acceptor_.local_endpoint().port();
    accept_thread_ = std::thread([this] { accept_loop(); });
  }
  ~test_server() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
      for (int fd : fds_)
        ::shutdown(fd, SHUT_RDWR);
    }
    cv_.notify_all();
    ::shutdown(acceptor_.native_handle(), SHUT_RDWR);
    accept_thread_.join();
    for (auto& t : conn_threads_)
      t.join();
  }
  std::uint16_t port() const { return port_; }
  std::string url(const std::string& path = "/", const std::string& host = "127.0.0.1") const {
    return std::string(tls_ ? "https://" : "http://") + host + ":" + std::to_string(port_) + path;
  }
  std::vector<seen> requests() {
    std::lock_guard<std::mutex> lock(mu_);
    return seen_;
  }
  std::size_t accepted() {
    std::lock_guard<std::mutex> lock(mu_);
    return accepted_;
  }
  std::size_t max_open() {
    std::lock_guard<std::mutex> lock(mu_);
    return max_open_;
  }
  std::string last_sni() {
    std::lock_guard<std::mutex> lock(mu_);
    return sni_;
  }
  /// Waits until `n` connections have ended (the client closed them, or the script did).
  bool wait_ended(std::size_t n, ms timeout = 2000ms) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return ended_ >= n; });
  }
  bool wait_requests(std::size_t n, ms timeout = 2000ms) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return seen_.size() >= n; });
  }

private:
  void accept_loop() {
    for (;;) {
      tcp::socket sock(io_);
      error_code ec;
      acceptor_.accept(sock, ec);
      std::lock_guard<std::mutex> lock(mu_);
      if (ec || stopping_)
        return;
      std::size_t index = accepted_++;
      max_open_ = std::max(max_open_, ++open_);
      fds_.insert(sock.native_handle());
      conn_threads_.emplace_back(
          [this, index, s = std::make_shared<tcp::socket>(std::move(sock))] { serve(*s, index); });
    }
  }

  void serve(tcp::socket& sock, std::size_t index) {
    if (tls_) {
      ssl::stream<tcp::socket&> s(sock, *tls_);
      error_code ec;
      s.handshake(ssl::stream_base::server, ec);
      if (!ec) {
        const char* name = SSL_get_servername(s.native_handle(), TLSEXT_NAMETYPE_host_name);
        set_sni(name ? name : "");
        serve_requests(s, index);
      }
    } else {
      serve_requests(sock, index);
    }
    std::lock_guard<std::mutex> lock(mu_);
    fds_.erase(sock.native_handle());
    error_code ignored;
    sock.close(ignored);
    --open_;
    ++ended_;
    cv_.notify_all();
  }

  template <class Stream>
  void serve_requests(Stream& s, std::size_t index) {
    const int fd = s.lowest_layer().native_handle();
    boost::beast::flat_buffer buf;
    for (std::size_t nth = 0;; ++nth) {
      seen got{index, nth, {}};
      error_code ec;
      bhttp::read(s, buf, got.req, ec);
      if (ec)
        return;
      answer a = script_(got);
      record(std::move(got));
      if (!pause(a.delay, fd))
        return;
      for (std::size_t i = 0; i < a.parts.size(); ++i) {
        if ((i > 0 && !pause(a.gap, fd)) || (asio::write(s, asio::buffer(a.parts[i]), ec), ec))
          return;
      }
      if (a.close || a.parts.empty())
        return;
    }
  }

  void record(seen&& s) {
    std::lock_guard<std::mutex> lock(mu_);
    seen_.push_back(std::move(s));
    cv_.notify_all();
  }
  void set_sni(std::string name) {
    std::lock_guard<std::mutex> lock(mu_);
    sni_ = std::move(name);
  }
  /// Sleeps `d`; false as soon as the server stops or the client closes `fd`.
  bool pause(ms d, int fd) {
    auto until = std::chrono::steady_clock::now() + d;
    for (;;) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (stopping_)
          return false;
      }
      auto left = std::chrono::duration_cast<ms>(until - std::chrono::steady_clock::now());
      if (left <= 0ms)
        return true;
      pollfd p{fd, POLLIN, 0};
      char byte = 0;
      if (::poll(&p, 1, static_cast<int>(std::min(left, 10ms).count())) > 0 &&
          ::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) <= 0)
        return false; // EOF or reset; pipelined bytes (recv > 0) wait for their turn
    }
  }

  script script_;
  ssl::context* tls_;
  asio::io_context io_;
  tcp::acceptor acceptor_;
  std::uint16_t port_ = 0;
  std::thread accept_thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::set<int> fds_;
  std::vector<std::thread> conn_threads_;
  std::vector<seen> seen_;
  std::size_t accepted_ = 0, open_ = 0, max_open_ = 0, ended_ = 0;
  std::string sni_;
};

/// The client's io_context, run by two threads for the test's lifetime.
class io_threads {
public:
  io_threads() {
    for (int i = 0; i < 2; ++i)
      threads_.emplace_back([this] { io.run(); });
  }
  ~io_threads() {
    work_.reset();
    io.stop();
    for (auto& t : threads_)
      t.join();
  }
  asio::io_context io;

private:
  asio::executor_work_guard<asio::io_context::executor_type> work_{io.get_executor()};
  std::vector<std::thread> threads_;
};

/// Callbacks' results in the order they ran, and the threads they ran on.
struct collector {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<incoming_response> results;
  std::vector<std::thread::id> threads;

  std::function<void(incoming_response&&)> callback() {
    return [this](incoming_response&& r) {
      std::lock_guard<std::mutex> lock(mu);
      results.push_back(std::move(r));
      threads.push_back(std::this_thread::get_id());
      cv.notify_all();
    };
  }
  bool wait_for(std::size_t n, ms timeout = 5000ms) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, timeout, [&] { return results.size() >= n; });
  }
  std::size_t count() {
    std::lock_guard<std::mutex> lock(mu);
    return results.size();
  }
};

outgoing_request post(const std::string& url, std::string body = R"({"job":1})") {
  outgoing_request r;
  r.url = url;
  r.body = std::move(body);
  return r;
}

/// Sends `req` and waits for its callback.
incoming_response call(client& c, outgoing_request req, ms wait = 5000ms) {
  auto promise = std::make_shared<std::promise<incoming_response>>();
  auto result = promise->get_future();
  c.request(std::move(req), [promise](incoming_response&& r) { promise->set_value(std::move(r)); });
  REQUIRE(result.wait_for(wait) == std::future_status::ready);
  return result.get();
}

std::string header(const seen& s, bhttp::field f) {
  auto v = s.req[f];
  return std::string(v.data(), v.size());
}

std::string header(const seen& s, const char* name) {
  auto v = s.req[name];
  return std::string(v.data(), v.size());
}

/// A throw-away CA with a server certificate for localhost and 127.0.0.1, one for
/// elsewhere.example under the same CA, and an unrelated CA; made once per test run.
struct certificates {
  certificates() {
    char tmpl[] = "/tmp/sessiond-httpc-XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    dir = tmpl;
    const std::string ec_key = " -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    std::string cmds =
        "cd " + dir + " && openssl req -x509" + ec_key +
        " -days 2 -subj /CN=sessiond-test-ca -keyout ca.key -out ca.pem"
        " && openssl req" +
        ec_key +
        " -subj /CN=localhost -keyout server.key -out server.csr"
        " && printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > ext.cnf"
        " && printf 'subjectAltName=DNS:elsewhere.example\\n' > elsewhere.cnf"
        " && openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2"
        " -extfile ext.cnf -out server.pem"
        " && openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2"
        " -extfile elsewhere.cnf -out elsewhere.pem"
        " && openssl req -x509" +
        ec_key + " -days 2 -subj /CN=other-ca -keyout other.key -out other.pem";
    REQUIRE(std::system(("(" + cmds + ") >/dev/null 2>&1").c_str()) == 0);
  }
  ~certificates() { std::system(("rm -rf " + dir).c_str()); }
  std::string file(const char* name) const { return dir + "/" + name; }
  std::unique_ptr<ssl::context> server_context(const char* cert = "server.pem") const {
    auto ctx = std::make_unique<ssl::context>(ssl::context::tls_server);
    ctx->use_certificate_chain_file(file(cert));
    ctx->use_private_key_file(file("server.key"), ssl::context::pem);
    return ctx;
  }
  std::string dir;
};

const certificates& certs() {
  static certificates c;
  return c;
}

} // namespace

// ---- errors and URLs ----------------------------------------------------------------------

TEST_CASE("every client_errc value has its own string") {
  std::set<std::string> names;
  for (int i = 0; i <= static_cast<int>(client_errc::closed); ++i) {
    std::string name = to_string(static_cast<client_errc>(i));
    CHECK(name != "unknown");
    names.insert(name);
  }
  CHECK(names.size() == static_cast<std::size_t>(client_errc::closed) + 1);
  CHECK(std::string(to_string(client_errc::timeout)) == "timeout");
}

TEST_CASE("parse_http_url takes http and https URLs with default and explicit ports") {
  parsed_url u;
  std::string error;
  REQUIRE(parse_http_url("http://example.com", u, error));
  CHECK_FALSE(u.tls);
  CHECK(u.host == "example.com");
  CHECK(u.port == 80);
  CHECK(u.target == "/");
  CHECK(u.authorization.empty());

  REQUIRE(parse_http_url("HTTPS://Hooks.Example.COM/a/b?c=d&e=%20#frag", u, error));
  CHECK(u.tls);
  CHECK(u.host == "hooks.example.com");
  CHECK(u.port == 443);
  CHECK(u.target == "/a/b?c=d&e=%20");

  REQUIRE(parse_http_url("http://10.0.0.1:8080?x=1", u, error));
  CHECK(u.host == "10.0.0.1");
  CHECK(u.port == 8080);
  CHECK(u.target == "/?x=1");

  REQUIRE(parse_http_url("https://h:65535/", u, error));
  CHECK(u.port == 65535);
}

TEST_CASE("parse_http_url reads IPv6 hosts in brackets") {
  parsed_url u;
  std::string error;
  REQUIRE(parse_http_url("http://[::1]:9000/x", u, error));
  CHECK(u.host == "::1");
  CHECK(u.port == 9000);
  CHECK(u.target == "/x");
  REQUIRE(parse_http_url("https://[2001:DB8::1]", u, error));
  CHECK(u.host == "2001:db8::1");
  CHECK(u.port == 443);
  CHECK(u.target == "/");
}

TEST_CASE("parse_http_url turns user:password into Basic authorization") {
  parsed_url u;
  std::string error;
  REQUIRE(parse_http_url("http://user:p%40ss@h/hook", u, error));
  CHECK(u.authorization == "Basic dXNlcjpwQHNz"); // user:p@ss
  CHECK(u.host == "h");
  REQUIRE(parse_http_url("https://user:pa:ss@h/", u, error));
  CHECK(u.authorization == "Basic dXNlcjpwYTpzcw=="); // user:pa:ss, the first colon splits
  REQUIRE(parse_http_url("https://token@h/a@b", u, error));
  CHECK(u.authorization == "Basic dG9rZW46"); // token: (an empty password, as curl sends)
  CHECK(u.target == "/a@b");
}

TEST_CASE("parse_http_url refuses other schemes, bad hosts, ports and targets, saying why") {
  for (const char* bad :
       {"ftp://h/", "h/x", "http://", "http:///x", "http://h:0/", "http://h:65536/", "http://h:x/",
        "http://h:/", "http://[::1/", "http://[zz]/", "http://[::1]x/", "http://h%41/",
        "http://h /", "http://h/a b", "http://h/\xc3\xa9", "http://u:%zz@h/", "http://u:%4@h/"}) {
    INFO(bad);
    parsed_url u;
    u.host = "unchanged";
    std::string error;
    CHECK_FALSE(parse_http_url(bad, u, error));
    CHECK_FALSE(error.empty());
    CHECK(u.host == "unchanged");
  }
}

// ---- exchanges ----------------------------------------------------------------------------

TEST_CASE("a POST arrives with its body, headers, Host and Idempotency-Key as sent, and the "
          "status, content type and body come back") {
  test_server srv([](const seen& s) {
    return s.nth == 0 ? ok(R"({"done":true})", "", 201) : ok("busy", "", 503);
  });
  io_threads t;
  client c(t.io, {});
  auto req = post("http://user:p%40ss@127.0.0.1:" + std::to_string(srv.port()) + "/hooks/a?x=1");
  req.headers = {{"Idempotency-Key", "job-42-attempt-1"}, {"X-Sessiond-Job", "42"}};
  auto r = call(c, req);
  CHECK(r.error == client_errc::ok);
  CHECK(r.detail.empty());
  CHECK(r.status == 201);
  CHECK(r.content_type == "text/plain");
  CHECK(r.body == R"({"done":true})");

  auto got = srv.requests().at(0);
  CHECK(got.req.method() == bhttp::verb::post);
  CHECK(got.req.target() == "/hooks/a?x=1");
  CHECK(got.req.version() == 11);
  CHECK(got.req.body() == R"({"job":1})");
  CHECK(header(got, bhttp::field::host) == "127.0.0.1:" + std::to_string(srv.port()));
  CHECK(header(got, bhttp::field::content_type) == "application/json");
  CHECK(header(got, bhttp::field::content_length) == "9");
  CHECK(header(got, bhttp::field::user_agent) == "sessiond");
  CHECK(header(got, bhttp::field::authorization) == "Basic dXNlcjpwQHNz");
  CHECK(header(got, "Idempotency-Key") == "job-42-attempt-1");
  CHECK(header(got, "X-Sessiond-Job") == "42");

  // A 5xx is an answer, not a client error: the caller decides about retrying.
  auto busy = call(c, req);
  CHECK(busy.error == client_errc::ok);
  CHECK(busy.status == 503);
  CHECK(busy.body == "busy");
  CHECK(c.stats().failures == 0);
}

TEST_CASE("sequential requests to one host reuse one kept-alive connection") {
  test_server srv([](const seen& s) { return ok(std::string(s.req.target())); });
  io_threads t;
  client c(t.io, {});
  for (int i = 0; i < 3; ++i) {
    auto r = call(c, post(srv.url("/n" + std::to_string(i))));
    CHECK(r.status == 200);
    CHECK(r.body == "/n" + std::to_string(i));
  }
  CHECK(srv.accepted() == 1);
  auto st = c.stats();
  CHECK(st.requests == 3);
  CHECK(st.connections_opened == 1);
  CHECK(st.connections_reused == 2);
}

TEST_CASE("a server that answers after the timeout gives timeout within about the timeout") {
  test_server srv([](const seen&) {
    auto a = ok("late");
    a.delay = 3000ms;
    return a;
  });
  io_threads t;
  client c(t.io, {});
  auto req = post(srv.url());
  req.timeout = 300ms;
  auto start = std::chrono::steady_clock::now();
  auto r = call(c, req);
  auto took = std::chrono::steady_clock::now() - start;
  CHECK(r.error == client_errc::timeout);
  CHECK(r.detail == "timeout after 300 ms waiting for the response from 127.0.0.1:" +
                        std::to_string(srv.port()));
  CHECK(took >= 290ms);
  CHECK(took < 1500ms);
  CHECK(srv.wait_ended(1)); // the timed-out connection is closed, not kept
  CHECK(c.stats().failures == 1);
}

TEST_CASE("a request waiting for a busy host's connection times out at its own deadline") {
  test_server srv([](const seen&) {
    auto a = ok("slow");
    a.delay = 1500ms;
    return a;
  });
  io_threads t;
  client_options o;
  o.max_connections_per_host = 1;
  client c(t.io, o);
  collector first;
  c.request(post(srv.url()), first.callback());
  auto queued = post(srv.url());
  queued.timeout = 200ms;
  auto start = std::chrono::steady_clock::now();
  auto r = call(c, queued);
  CHECK(std::chrono::steady_clock::now() - start < 1000ms);
  CHECK(r.error == client_errc::timeout);
  CHECK(r.detail.find("waiting for a connection to 127.0.0.1:") != std::string::npos);
  REQUIRE(first.wait_for(1));
  CHECK(first.results[0].status == 200);
  CHECK(srv.requests().size() == 1);
}

TEST_CASE("a refused connection gives connect_failed with a detail naming the address") {
  std::uint16_t port = 0;
  {
    asio::io_context io;
    tcp::acceptor probe(io, {asio::ip::make_address("127.0.0.1"), 0});
    port = probe.local_endpoint().port();
  } // closed: nothing listens there now
  io_threads t;
  client c(t.io, {});
  auto r = call(c, post("http://127.0.0.1:" + std::to_string(port) + "/"));
  CHECK(r.error == client_errc::connect_failed);
  CHECK(r.detail == "connect to 127.0.0.1:" + std::to_string(port) + ": Connection refused");
  CHECK(c.stats().connections_opened == 0);
}

TEST_CASE("an unresolvable host gives resolve_failed") {
  io_threads t;
  client c(t.io, {});
  auto req = post("http://no-such-host.invalid/");
  req.timeout = 20000ms; // a resolver without network may take a while to give up
  auto r = call(c, req, 25000ms);
  CHECK(r.error == client_errc::resolve_failed);
  CHECK(r.detail.rfind("resolve no-such-host.invalid: ", 0) == 0);
}

TEST_CASE("a response over max_response_bytes gives response_too_large") {
  test_server srv([](const seen& s) {
    if (s.req.target() == "/chunked")
      return answer{{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n64\r\n" +
                     std::string(100, 'x') + "\r\n64\r\n" + std::string(100, 'y') +
                     "\r\n0\r\n\r\n"}};
    return ok(std::string(1000, 'x'));
  });
  io_threads t;
  client_options o;
  o.max_response_bytes = 150;
  client c(t.io, o);
  auto r = call(c, post(srv.url()));
  CHECK(r.error == client_errc::response_too_large);
  CHECK(r.detail.find("is over 150 bytes") != std::string::npos);
  auto chunked = call(c, post(srv.url("/chunked")));
  CHECK(chunked.error == client_errc::response_too_large);
}

TEST_CASE("a chunked response arriving in pieces is read whole, and its connection kept") {
  test_server srv([](const seen&) {
    answer a{{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n"
              "5\r\nhel",
              "lo\r\n6\r\n world\r\n", "0\r\n\r\n"}};
    a.gap = 30ms;
    return a;
  });
  io_threads t;
  client c(t.io, {});
  for (int i = 0; i < 2; ++i) {
    auto r = call(c, post(srv.url()));
    CHECK(r.error == client_errc::ok);
    CHECK(r.status == 200);
    CHECK(r.content_type == "text/plain");
    CHECK(r.body == "hello world");
  }
  CHECK(c.stats().connections_reused == 1);
}

TEST_CASE("a response ended by the server closing is read whole; a garbled one is a protocol "
          "error") {
  test_server srv([](const seen& s) -> answer {
    if (s.req.target() == "/garbled")
      return {{"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"}};
    if (s.req.target() == "/switch")
      return {{"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n"}};
    answer a{{"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil ", "the end"}};
    a.gap = 30ms;
    a.close = true;
    return a;
  });
  io_threads t;
  client c(t.io, {});
  auto r = call(c, post(srv.url()));
  CHECK(r.error == client_errc::ok);
  CHECK(r.body == "until the end");
  auto garbled = call(c, post(srv.url("/garbled")));
  CHECK(garbled.error == client_errc::protocol);
  CHECK(garbled.detail.rfind("bad HTTP response from 127.0.0.1:", 0) == 0);
  CHECK(call(c, post(srv.url("/switch"))).error == client_errc::protocol);
  CHECK(c.stats().connections_reused == 0); // an answer ended by EOF leaves nothing to reuse
}

TEST_CASE("204, 304, interim 1xx and HEAD responses without a body complete") {
  test_server srv([](const seen& s) -> answer {
    switch (s.nth) {
    case 0:
      return {{"HTTP/1.1 204 No Content\r\n\r\n"}};
    case 1:
      return {{"HTTP/1.1 304 Not Modified\r\nETag: \"1\"\r\n\r\n"}};
    case 2:
      return {{"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
               "HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\nok"}};
    default:
      return {{"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n"}};
    }
  });
  io_threads t;
  client c(t.io, {});
  auto no_content = call(c, post(srv.url()));
  CHECK(no_content.status == 204);
  CHECK(no_content.body.empty());
  auto not_modified = call(c, post(srv.url()));
  CHECK(not_modified.status == 304);
  auto accepted = call(c, post(srv.url()));
  CHECK(accepted.status == 202);
  CHECK(accepted.body == "ok");
  auto head = post(srv.url(), "");
  head.method = "HEAD";
  auto h = call(c, head);
  CHECK(h.error == client_errc::ok);
  CHECK(h.status == 200);
  CHECK(h.body.empty());
  CHECK(srv.requests().at(3).req.method() == bhttp::verb::head);
  CHECK(srv.accepted() == 1); // all four on one connection: each ended where it should
}

TEST_CASE("Connection: close from the server is honoured: the client closes and reconnects") {
  test_server srv([](const seen& s) {
    // The server leaves the socket open: only the client's close ends the connection.
    return s.conn == 0 ? ok("bye", "Connection: close\r\n") : ok("again");
  });
  io_threads t;
  client c(t.io, {});
  CHECK(call(c, post(srv.url())).body == "bye");
  CHECK(srv.wait_ended(1));
  CHECK(call(c, post(srv.url())).body == "again");
  CHECK(srv.accepted() == 2);
  CHECK(c.stats().connections_reused == 0);
}

TEST_CASE("a kept-alive connection the server closed while idle is replaced transparently") {
  test_server srv([](const seen& s) {
    auto a = ok(s.conn == 0 ? "one" : "two");
    a.close = s.conn == 0; // closes without saying so: the client learns it from the socket
    return a;
  });
  io_threads t;
  client c(t.io, {});
  CHECK(call(c, post(srv.url())).body == "one");
  REQUIRE(srv.wait_ended(1));
  auto r = call(c, post(srv.url()));
  CHECK(r.error == client_errc::ok);
  CHECK(r.body == "two");
  CHECK(srv.requests().size() == 2);
  CHECK(c.stats().connections_opened == 2);
}

TEST_CASE("a reused connection dropped before any response byte is retried once on a new "
          "connection") {
  test_server srv([](const seen& s) {
    if (s.conn == 0)
      return s.nth == 0 ? ok("first") : drop(); // reads the request, closes without answering
    return ok("retried");
  });
  io_threads t;
  client c(t.io, {});
  CHECK(call(c, post(srv.url())).body == "first");
  auto req = post(srv.url(), R"({"job":2})");
  req.headers = {{"Idempotency-Key", "job-2"}};
  auto r = call(c, req);
  CHECK(r.error == client_errc::ok);
  CHECK(r.body == "retried");
  auto got = srv.requests();
  REQUIRE(got.size() == 3);
  CHECK(got[2].conn == 1);
  CHECK(got[2].req.body() == got[1].req.body());
  CHECK(header(got[2], "Idempotency-Key") == "job-2");
  auto st = c.stats();
  CHECK(st.connections_opened == 2);
  CHECK(st.connections_reused == 1);
  CHECK(st.failures == 0);
}

TEST_CASE("a dropped request is retried at most once, and not at all on a fresh connection") {
  test_server srv([](const seen& s) { return s.conn == 0 && s.nth == 0 ? ok("first") : drop(); });
  io_threads t;
  client c(t.io, {});
  CHECK(call(c, post(srv.url())).body == "first");
  auto r = call(c, post(srv.url())); // reused connection dropped, then the retry dropped
  CHECK(r.error == client_errc::connection_lost);
  CHECK(r.detail.find("127.0.0.1:" + std::to_string(srv.port())) != std::string::npos);
  CHECK(srv.requests().size() == 3);
  auto fresh = call(c, post(srv.url())); // no idle connection left: a fresh one, no retry
  CHECK(fresh.error == client_errc::connection_lost);
  CHECK(srv.requests().size() == 4);
}

TEST_CASE("an idle kept-alive connection is closed after idle_timeout") {
  test_server srv([](const seen&) { return ok("x"); });
  io_threads t;
  client_options o;
  o.idle_timeout = 200ms;
  client c(t.io, o);
  CHECK(call(c, post(srv.url())).status == 200);
  auto start = std::chrono::steady_clock::now();
  REQUIRE(srv.wait_ended(1, 3000ms));
  CHECK(std::chrono::steady_clock::now() - start >= 150ms);
}

// ---- concurrency, overload, stop ----------------------------------------------------------

TEST_CASE("max_connections_per_host = 2: ten concurrent slow requests never use more than two "
          "connections, and all complete") {
  test_server srv([](const seen& s) {
    auto a = ok(std::string(s.req.target()));
    a.delay = 100ms;
    return a;
  });
  io_threads t;
  client_options o;
  o.max_connections_per_host = 2;
  client c(t.io, o);
  collector done;
  for (int i = 0; i < 10; ++i)
    c.request(post(srv.url("/r" + std::to_string(i))), done.callback());
  REQUIRE(done.wait_for(10));
  std::set<std::string> bodies;
  for (auto& r : done.results) {
    CHECK(r.error == client_errc::ok);
    CHECK(r.status == 200);
    bodies.insert(r.body);
  }
  CHECK(bodies.size() == 10);
  CHECK(srv.max_open() <= 2);
  CHECK(srv.accepted() <= 2);
  CHECK(c.stats().connections_opened <= 2);
  CHECK(c.stats().connections_reused >= 8);
}

TEST_CASE("requests beyond max_queued fail at once with overloaded; the queue runs in order") {
  test_server srv([](const seen& s) {
    auto a = ok(std::string(s.req.target()));
    a.delay = 500ms;
    return a;
  });
  io_threads t;
  client_options o;
  o.max_connections_per_host = 1;
  o.max_queued = 2;
  client c(t.io, o);
  collector done;
  for (int i = 0; i < 3; ++i)
    c.request(post(srv.url("/q" + std::to_string(i))), done.callback());
  auto start = std::chrono::steady_clock::now();
  auto r = call(c, post(srv.url("/q3")));
  CHECK(std::chrono::steady_clock::now() - start < 400ms); // long before the first answer
  CHECK(r.error == client_errc::overloaded);
  CHECK_FALSE(r.detail.empty());
  REQUIRE(done.wait_for(3));
  for (int i = 0; i < 3; ++i)
    CHECK(done.results[i].body == "/q" + std::to_string(i));
}

TEST_CASE("stop() fails running and queued requests with closed, and later requests at once") {
  test_server srv([](const seen&) {
    auto a = ok("never in time");
    a.delay = 5000ms;
    return a;
  });
  io_threads t;
  client_options o;
  o.max_connections_per_host = 1;
  client c(t.io, o);
  collector done;
  for (int i = 0; i < 3; ++i)
    c.request(post(srv.url()), done.callback());
  REQUIRE(srv.wait_requests(1));
  auto start = std::chrono::steady_clock::now();
  c.stop();
  REQUIRE(done.wait_for(3, 1000ms));
  CHECK(std::chrono::steady_clock::now() - start < 1000ms);
  for (auto& r : done.results)
    CHECK(r.error == client_errc::closed);
  CHECK(call(c, post(srv.url()), 1000ms).error == client_errc::closed);
  CHECK(srv.wait_ended(1)); // the running request's connection is closed
  CHECK(done.count() == 3); // each callback ran once
}

TEST_CASE("a bad URL, method or header fails at once with bad_url, on an io thread") {
  io_threads t;
  client c(t.io, {});
  collector done;
  auto bad_scheme = post("ftp://127.0.0.1/");
  auto bad_method = post("http://127.0.0.1:9/");
  bad_method.method = "PO ST";
  auto injected = post("http://127.0.0.1:9/");
  injected.headers = {{"X-A", "1\r\nX-B: 2"}};
  auto framing = post("http://127.0.0.1:9/");
  framing.headers = {{"content-length", "1"}};
  for (auto* r : {&bad_scheme, &bad_method, &injected, &framing})
    c.request(*r, done.callback());
  REQUIRE(done.wait_for(4));
  for (std::size_t i = 0; i < 4; ++i) {
    CHECK(done.results[i].error == client_errc::bad_url);
    CHECK_FALSE(done.results[i].detail.empty());
    CHECK(done.threads[i] != std::this_thread::get_id());
  }
}

TEST_CASE("a callback that throws does not disturb the client") {
  test_server srv([](const seen&) { return ok("fine"); });
  io_threads t;
  client c(t.io, {});
  c.request(post(srv.url()), [](incoming_response&&) { throw std::runtime_error("caller bug"); });
  REQUIRE(srv.wait_requests(1));
  CHECK(call(c, post(srv.url())).body == "fine");
}

// ---- HTTPS --------------------------------------------------------------------------------

TEST_CASE("https to a server whose certificate chains to tls_ca_file works, with SNI for names "
          "and the certificate's IP checked for addresses") {
  auto tls = certs().server_context();
  test_server srv([](const seen& s) { return ok("secure " + std::string(s.req.target())); },
                  tls.get());
  io_threads t;
  client_options o;
  o.tls_ca_file = certs().file("ca.pem");
  client c(t.io, o);
  auto r = call(c, post(srv.url("/a", "localhost")));
  CHECK(r.error == client_errc::ok);
  CHECK(r.body == "secure /a");
  CHECK(srv.last_sni() == "localhost");
  CHECK(header(srv.requests().at(0), bhttp::field::host) ==
        "localhost:" + std::to_string(srv.port()));
  CHECK(call(c, post(srv.url("/b", "localhost"))).body == "secure /b");
  CHECK(c.stats().connections_reused == 1);

  auto by_ip = call(c, post(srv.url("/c")));
  CHECK(by_ip.error == client_errc::ok);
  CHECK(by_ip.body == "secure /c");
  CHECK(srv.last_sni().empty()); // RFC 6066: no IP addresses in SNI
}

TEST_CASE("https is refused when tls_ca_file does not vouch for the server") {
  auto tls = certs().server_context();
  test_server srv([](const seen&) { return ok("must not be read"); }, tls.get());
  io_threads t;
  client_options o;
  o.tls_ca_file = certs().file("other.pem");
  client c(t.io, o);
  auto r = call(c, post(srv.url("/", "localhost")));
  INFO(r.detail);
  CHECK(r.error == client_errc::tls_failed);
  CHECK(r.detail.rfind("TLS handshake with localhost:" + std::to_string(srv.port()), 0) == 0);
  CHECK(r.detail.find("certificate verify failed") != std::string::npos);
  CHECK(srv.requests().empty());
}

TEST_CASE("https is refused when the certificate names another host") {
  auto tls = certs().server_context("elsewhere.pem");
  test_server srv([](const seen&) { return ok("must not be read"); }, tls.get());
  io_threads t;
  client_options o;
  o.tls_ca_file = certs().file("ca.pem");
  client c(t.io, o);
  for (const char* host : {"localhost", "127.0.0.1"}) {
    INFO(host);
    auto r = call(c, post(srv.url("/", host)));
    CHECK(r.error == client_errc::tls_failed);
    INFO(r.detail);
    CHECK(r.detail.find("mismatch") != std::string::npos);
  }
  CHECK(srv.requests().empty());
}

TEST_CASE("a tls_ca_file that cannot be loaded stops the client's construction") {
  asio::io_context io;
  client_options missing;
  missing.tls_ca_file = "/nonexistent/ca.pem";
  CHECK_THROWS_AS(client(io, missing), std::runtime_error);
  std::string garbage = certs().file("garbage.pem");
  std::ofstream(garbage) << "not a certificate\n";
  client_options bad;
  bad.tls_ca_file = garbage;
  CHECK_THROWS_AS(client(io, bad), std::runtime_error);
  client_options zero;
  zero.max_connections_per_host = 0;
  CHECK_THROWS_AS(client(io, zero), std::invalid_argument);
}
