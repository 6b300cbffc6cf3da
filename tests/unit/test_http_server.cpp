// Unit tests of the HTTP server over real sockets: it binds 127.0.0.1:0, runs io on two
// threads, and is driven by plain Asio/Beast clients whose every read has a timeout.
#include "adapters/http/server.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace asio = boost::asio;
namespace bhttp = boost::beast::http;
using namespace std::chrono_literals;
using boost::system::error_code;
using ms = std::chrono::milliseconds;
using sessiond::http::handler;
using sessiond::http::method;
using sessiond::http::request;
using sessiond::http::responder_ptr;
using sessiond::http::response;
using sessiond::http::server;
using sessiond::http::server_options;
using http_response = bhttp::response<bhttp::string_body>;

/// A server on 127.0.0.1:0 whose io_context runs on two threads for the test's lifetime.
class test_server {
public:
  test_server(server_options opts, handler h)
      : srv_(io_, localhost(std::move(opts)), std::move(h)) {
    port_ = srv_.start();
    for (int i = 0; i < 2; ++i)
      threads_.emplace_back([this] { io_.run(); });
  }
  ~test_server() {
    work_.reset();
    io_.stop();
    for (auto& t : threads_)
      t.join();
  }
  server& srv() { return srv_; }
  std::uint16_t port() const { return port_; }

private:
  static server_options localhost(server_options o) {
    o.address = "127.0.0.1";
    o.port = 0;
    return o;
  }
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_{io_.get_executor()};
  server srv_;
  std::uint16_t port_ = 0;
  std::vector<std::thread> threads_;
};

/// What the handler saw, and the responders it chose to keep.
struct recorder {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<request> requests;
  std::vector<responder_ptr> held;

  void add(request&& r, responder_ptr keep = nullptr) {
    std::lock_guard<std::mutex> lock(mu);
    requests.push_back(std::move(r));
    if (keep)
      held.push_back(std::move(keep));
    cv.notify_all();
  }
  bool wait_for(std::size_t n, ms timeout = 2000ms) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, timeout, [&] { return requests.size() >= n; });
  }
  std::size_t count() {
    std::lock_guard<std::mutex> lock(mu);
    return requests.size();
  }
  request at(std::size_t i) {
    std::lock_guard<std::mutex> lock(mu);
    return requests.at(i);
  }
  responder_ptr take(std::size_t i) {
    std::lock_guard<std::mutex> lock(mu);
    return std::move(held.at(i));
  }
};

response text(std::string body, unsigned status = 200) {
  response r;
  r.status = status;
  r.content_type = "text/plain";
  r.body = std::move(body);
  return r;
}

/// A blocking-style client whose reads give up after a timeout instead of hanging.
class client {
public:
  explicit client(std::uint16_t port) : sock_(io_) {
    sock_.connect({asio::ip::make_address("127.0.0.1"), port});
  }
  void send(const std::string& raw) { asio::write(sock_, asio::buffer(raw)); }
  bool try_send(const std::string& raw) {
    error_code ec;
    asio::write(sock_, asio::buffer(raw), ec);
    return !ec;
  }
  /// The next response, or nullopt when none arrived within `timeout` or the server closed.
  /// `head` reads the answer to a HEAD request (headers only).
  std::optional<http_response> read(ms timeout = 2000ms, bool head = false) {
    bhttp::response_parser<bhttp::string_body> p;
    p.skip(head);
    error_code ec;
    if (!run([&](auto done) { bhttp::async_read(sock_, buf_, p, done); }, timeout, ec) || ec)
      return std::nullopt;
    return p.release();
  }
  /// Time until the server closes the connection (what it sends meanwhile is skipped), or
  /// nullopt when it is still open after `timeout`.
  std::optional<ms> time_to_close(ms timeout) {
    auto start = std::chrono::steady_clock::now();
    char scratch[4096];
    for (;;) {
      auto left =
          timeout - std::chrono::duration_cast<ms>(std::chrono::steady_clock::now() - start);
      error_code ec;
      if (left <= 0ms)
        return std::nullopt;
      if (!run([&](auto done) { sock_.async_read_some(asio::buffer(scratch), done); }, left, ec))
        return std::nullopt;
      if (ec)
        return std::chrono::duration_cast<ms>(std::chrono::steady_clock::now() - start);
    }
  }

private:
  /// Starts one operation and runs it for at most `timeout`; false on timeout.
  template <class Start>
  bool run(Start start, ms timeout, error_code& ec) {
    bool done = false;
    start([&](error_code e, std::size_t) {
      ec = e;
      done = true;
    });
    io_.restart();
    io_.run_for(timeout);
    if (done)
      return true;
    sock_.cancel();
    io_.restart();
    io_.run(); // reap the cancelled operation before its captures go out of scope
    return false;
  }

  asio::io_context io_;
  asio::ip::tcp::socket sock_;
  boost::beast::flat_buffer buf_;
};

std::string get(const std::string& target, const std::string& extra = "") {
  return "GET " + target + " HTTP/1.1\r\nHost: t\r\n" + extra + "\r\n";
}

template <class Pred>
bool eventually(Pred pred, ms timeout = 2000ms) {
  auto until = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > until)
      return false;
    std::this_thread::sleep_for(2ms);
  }
  return true;
}

nlohmann::json problem_of(const http_response& r) {
  CHECK(r[bhttp::field::content_type] == "application/problem+json");
  return nlohmann::json::parse(r.body());
}

/// Answers at once with the target as body; "/hold" requests are kept for the test to answer.
handler echo_or_hold(recorder& rec) {
  return [&rec](request&& r, responder_ptr resp) {
    if (r.target == "/hold")
      return rec.add(std::move(r), std::move(resp));
    std::string target = r.target;
    rec.add(std::move(r));
    resp->send(text(std::move(target)));
  };
}

} // namespace

TEST_CASE("a request reaches the handler with its method, target, body and headers") {
  recorder rec;
  test_server s({}, [&](request&& r, const responder_ptr& resp) {
    rec.add(std::move(r));
    response out;
    out.status = 201;
    out.body = R"({"ok":true})";
    out.headers.emplace_back("ETag", "\"4\"");
    resp->send(std::move(out));
  });
  client c(s.port());
  c.send("PATCH /v1/sessions/abc?x=1 HTTP/1.1\r\nHost: t\r\n"
         "Content-Type: application/merge-patch+json\r\nIf-Match: \"3\"\r\n"
         "If-None-Match: *\r\nContent-Length: 7\r\n\r\n{\"a\":1}");
  auto res = c.read();
  REQUIRE(res);
  CHECK(res->result_int() == 201);
  CHECK(res->body() == R"({"ok":true})");
  CHECK((*res)[bhttp::field::etag] == "\"4\"");
  CHECK((*res)[bhttp::field::server] == "sessiond");
  CHECK((*res)[bhttp::field::content_type] == "application/json");
  CHECK(res->keep_alive());
  REQUIRE(rec.wait_for(1));
  auto q = rec.at(0);
  CHECK(q.verb == method::patch);
  CHECK(q.target == "/v1/sessions/abc?x=1");
  CHECK(q.body == "{\"a\":1}");
  CHECK(q.content_type == "application/merge-patch+json");
  CHECK(q.has_if_match);
  CHECK(q.if_match == "\"3\"");
  CHECK(q.has_if_none_match);
  CHECK(q.if_none_match == "*");

  c.send("DELETE /v1/sessions/abc HTTP/1.1\r\nHost: t\r\n\r\n");
  REQUIRE(c.read());
  REQUIRE(rec.wait_for(2));
  auto d = rec.at(1);
  CHECK(d.verb == method::del);
  CHECK(d.body.empty());
  CHECK(d.content_type.empty());
  CHECK_FALSE(d.has_if_match);
  CHECK_FALSE(d.has_if_none_match);
}

TEST_CASE("every verb maps to its method and unknown verbs to other") {
  recorder rec;
  test_server s({}, echo_or_hold(rec));
  client c(s.port());
  const std::vector<std::pair<std::string, method>> verbs = {
      {"GET", method::get},       {"PUT", method::put},    {"POST", method::post},
      {"PATCH", method::patch},   {"DELETE", method::del}, {"OPTIONS", method::options},
      {"PROPFIND", method::other}};
  for (std::size_t i = 0; i < verbs.size(); ++i) {
    c.send(verbs[i].first + " /v HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
    REQUIRE(c.read());
    REQUIRE(rec.wait_for(i + 1));
    CHECK(rec.at(i).verb == verbs[i].second);
  }
}

TEST_CASE("a chunked request body reaches the handler reassembled") {
  recorder rec;
  test_server s({}, echo_or_hold(rec));
  client c(s.port());
  c.send("POST /q HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
         "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
  REQUIRE(c.read());
  REQUIRE(rec.wait_for(1));
  CHECK(rec.at(0).body == "hello world");
}

TEST_CASE("a keep-alive connection serves 100 requests") {
  recorder rec;
  test_server s({}, echo_or_hold(rec));
  client c(s.port());
  for (int i = 0; i < 100; ++i) {
    auto target = "/r/" + std::to_string(i);
    c.send(get(target));
    auto res = c.read();
    REQUIRE(res);
    REQUIRE(res->result_int() == 200);
    REQUIRE(res->body() == target);
    REQUIRE(res->keep_alive());
  }
  auto st = s.srv().stats();
  CHECK(st.connections_accepted == 1);
  CHECK(st.requests == 100);
}

TEST_CASE("pipelined requests are answered in order") {
  recorder rec;
  test_server s({}, echo_or_hold(rec));
  client c(s.port());
  c.send(get("/one") + get("/two") + get("/three"));
  for (const char* want : {"/one", "/two", "/three"}) {
    auto res = c.read();
    REQUIRE(res);
    CHECK(res->body() == want);
  }
}

TEST_CASE("a handler may answer later from another thread") {
  std::mutex mu;
  std::vector<std::thread> workers;
  test_server s({}, [&](request&& r, responder_ptr resp) {
    std::lock_guard<std::mutex> lock(mu);
    workers.emplace_back([resp = std::move(resp), target = std::move(r.target)]() mutable {
      std::this_thread::sleep_for(20ms);
      resp->send(text("late " + target));
    });
  });
  struct joiner {
    std::vector<std::thread>& ts;
    ~joiner() {
      for (auto& t : ts)
        t.join();
    }
  } join_workers{workers};
  client c(s.port());
  for (int i = 0; i < 3; ++i) {
    c.send(get("/" + std::to_string(i)));
    auto res = c.read();
    REQUIRE(res);
    CHECK(res->body() == "late /" + std::to_string(i));
  }
}

TEST_CASE("a responder dropped without an answer yields 503 problem+json") {
  test_server s({}, [](request&&, const responder_ptr&) {});
  client c(s.port());
  c.send(get("/x"));
  auto res = c.read();
  REQUIRE(res);
  CHECK(res->result_int() == 503);
  auto j = problem_of(*res);
  CHECK(j["type"] == "urn:sessiond:problem:unavailable");
  CHECK(j["status"] == 503);
  CHECK(res->keep_alive()); // an ordinary answer: the connection stays usable
  c.send(get("/y"));
  REQUIRE(c.read());
}

TEST_CASE("a second send on one responder is ignored") {
  test_server s({}, [](request&&, const responder_ptr& resp) {
    resp->send(text("first"));
    resp->send(text("second", 500));
  });
  client c(s.port());
  for (int i = 0; i < 2; ++i) {
    c.send(get("/x"));
    auto res = c.read();
    REQUIRE(res);
    CHECK(res->result_int() == 200);
    CHECK(res->body() == "first");
  }
}

TEST_CASE("a handler that throws yields 500 problem+json") {
  test_server s({}, [](request&&, const responder_ptr&) { throw std::runtime_error("boom"); });
  client c(s.port());
  c.send(get("/x"));
  auto res = c.read();
  REQUIRE(res);
  CHECK(res->result_int() == 500);
  CHECK(problem_of(*res)["status"] == 500);
}

TEST_CASE("a HEAD answer carries the headers but not the body") {
  recorder rec;
  test_server s({}, echo_or_hold(rec));
  client c(s.port());
  c.send("HEAD /abc HTTP/1.1\r\nHost: t\r\n\r\n");
  auto res = c.read(2000ms, true);
  REQUIRE(res);
  CHECK((*res)[bhttp::field::content_length] == "4");
  c.send(get("/next")); // framing intact: no stray body bytes before this answer
  auto next = c.read();
  REQUIRE(next);
  CHECK(next->body() == "/next");
}

TEST_CASE("a 204 answer has no body and no Content-Length") {
  test_server s({}, [](request&&, const responder_ptr& resp) { resp->send(text("ignored", 204)); });
  client c(s.port());
  c.send(get("/x") + get("/y"));
  for (int i = 0; i < 2; ++i) {
    auto res = c.read();
    REQUIRE(res);
    CHECK(res->result_int() == 204);
    CHECK(res->find(bhttp::field::content_length) == res->end());
    CHECK(res->body().empty());
  }
}

TEST_CASE("Expect: 100-continue gets an interim answer before the body is sent") {
  recorder rec;
  test_server s({}, echo_or_hold(rec));
  client c(s.port());
  c.send("PUT /c HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
  auto interim = c.read();
  REQUIRE(interim);
  CHECK(interim->result_int() == 100);
  c.send("hello");
  auto res = c.read();
  REQUIRE(res);
  CHECK(res->result_int() == 200);
  REQUIRE(rec.wait_for(1));
  CHECK(rec.at(0).body == "hello");
}

TEST_CASE("HTTP/1.0 keeps the connection only when asked to") {
  recorder rec;
  test_server s({}, echo_or_hold(rec));
  client c(s.port());
  c.send("GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  auto res = c.read();
  REQUIRE(res);
  CHECK((*res)[bhttp::field::connection] == "keep-alive");
  c.send("GET /b HTTP/1.0\r\n\r\n");
  res = c.read();
  REQUIRE(res);
  CHECK(res->body() == "/b");
  CHECK((*res)[bhttp::field::connection] == "close");
  CHECK(c.time_to_close(1000ms));
}

TEST_CASE("a body over the limit yields 413 and never reaches the handler") {
  recorder rec;
  server_options o;
  o.max_body_bytes = 1024;
  test_server s(o, echo_or_hold(rec));

  SECTION("declared by Content-Length") {
    client c(s.port());
    c.send("PUT /x HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n" + std::string(1000, 'a'));
    auto res = c.read();
    REQUIRE(res);
    CHECK(res->result_int() == 413);
    CHECK(problem_of(*res)["status"] == 413);
    CHECK_FALSE(res->keep_alive());
    CHECK(c.time_to_close(1000ms));
  }
  SECTION("sent in chunks") {
    client c(s.port());
    std::string chunk = "258\r\n" + std::string(600, 'b') + "\r\n"; // 0x258 = 600 bytes
    c.send("PUT /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk + chunk);
    auto res = c.read();
    REQUIRE(res);
    CHECK(res->result_int() == 413);
  }
  CHECK(rec.count() == 0);
  CHECK(s.srv().stats().rejected_bad_request == 1);
}

TEST_CASE("a body of exactly the limit is accepted") {
  recorder rec;
  server_options o;
  o.max_body_bytes = 1024;
  test_server s(o, echo_or_hold(rec));
  client c(s.port());
  c.send("PUT /x HTTP/1.1\r\nHost: t\r\nContent-Length: 1024\r\n\r\n" + std::string(1024, 'c'));
  auto res = c.read();
  REQUIRE(res);
  CHECK(res->result_int() == 200);
  REQUIRE(rec.wait_for(1));
  CHECK(rec.at(0).body == std::string(1024, 'c'));
}

TEST_CASE("a header flood yields 431 and never reaches the handler") {
  recorder rec;
  server_options o;
  o.max_header_bytes = 2048;
  test_server s(o, echo_or_hold(rec));
  client c(s.port());

  SECTION("many headers") {
    std::string flood;
    for (int i = 0; i < 200; ++i)
      flood += "X-Pad-" + std::to_string(i) + ": " + std::string(32, 'p') + "\r\n";
    c.send(get("/x", flood));
  }
  SECTION("one huge header") {
    c.send(get("/x", "X-Huge: " + std::string(20000, 'h') + "\r\n"));
  }
  auto res = c.read();
  REQUIRE(res);
  CHECK(res->result_int() == 431);
  CHECK(problem_of(*res)["status"] == 431);
  CHECK(c.time_to_close(1000ms));
  CHECK(rec.count() == 0);
}

TEST_CASE("a malformed request line yields 400 and closes") {
  recorder rec;
  test_server s({}, echo_or_hold(rec));
  client c(s.port());
  SECTION("garbage") {
    c.send("this is not http\r\n\r\n");
  }
  SECTION("no version") {
    c.send("GET /x\r\nHost: t\r\n\r\n");
  }
  SECTION("bad Content-Length") {
    c.send("PUT /x HTTP/1.1\r\nContent-Length: x1\r\n\r\n");
  }
  auto res = c.read();
  REQUIRE(res);
  CHECK(res->result_int() == 400);
  CHECK(problem_of(*res)["type"] == "urn:sessiond:problem:bad-request");
  CHECK((*res)[bhttp::field::connection] == "close");
  CHECK(c.time_to_close(1000ms));
  CHECK(rec.count() == 0);
  CHECK(s.srv().stats().rejected_bad_request == 1);
}

TEST_CASE("a slowloris client dripping header bytes is cut off at header_timeout") {
  recorder rec;
  server_options o;
  o.header_timeout = 500ms;
  test_server s(o, echo_or_hold(rec));
  auto start = std::chrono::steady_clock::now();
  client c(s.port());
  c.send("GET /slow HTTP/1.1\r\n");
  bool closed = false;
  while (!closed && std::chrono::steady_clock::now() - start < 3000ms) {
    if (!c.try_send("X"))
      break; // the server already closed (reset)
    closed = c.time_to_close(200ms).has_value();
  }
  auto elapsed = std::chrono::steady_clock::now() - start;
  CHECK(elapsed >= 400ms);
  CHECK(elapsed < 1500ms);
  CHECK(rec.count() == 0);
  CHECK(eventually([&] { return s.srv().stats().rejected_bad_request == 1; }));
}

TEST_CASE("an idle keep-alive connection is closed after idle_timeout") {
  recorder rec;
  server_options o;
  o.idle_timeout = 300ms;
  o.header_timeout = 2000ms;
  test_server s(o, echo_or_hold(rec));
  client c(s.port());
  c.send(get("/x"));
  REQUIRE(c.read());
  auto closed_after = c.time_to_close(2000ms);
  REQUIRE(closed_after);
  CHECK(*closed_after >= 250ms);
  CHECK(*closed_after < 1000ms);
  CHECK(s.srv().stats().rejected_bad_request == 0);
  CHECK(eventually([&] { return s.srv().stats().connections_open == 0; }));
}

TEST_CASE("stop_accepting refuses new connections and lets in-flight requests finish") {
  recorder rec;
  test_server s({}, echo_or_hold(rec));
  client busy(s.port());
  client idle(s.port());
  idle.send(get("/fast"));
  REQUIRE(idle.read());
  busy.send(get("/hold"));
  REQUIRE(rec.wait_for(2));
  CHECK(s.srv().in_flight() == 1);

  s.srv().stop_accepting();
  CHECK_THROWS(client(s.port()));
  auto idle_closed = idle.time_to_close(1000ms);
  REQUIRE(idle_closed);
  CHECK(*idle_closed < 500ms);

  rec.take(0)->send(text("done"));
  auto res = busy.read();
  REQUIRE(res);
  CHECK(res->body() == "done");
  CHECK_FALSE(res->keep_alive());
  CHECK(busy.time_to_close(1000ms));
  CHECK(eventually([&] { return s.srv().in_flight() == 0; }));
}

TEST_CASE("in_flight counts requests handed over until their answer is written") {
  recorder rec;
  test_server s({}, echo_or_hold(rec));
  CHECK(s.srv().in_flight() == 0);
  client a(s.port());
  client b(s.port());
  a.send(get("/hold"));
  b.send(get("/hold"));
  REQUIRE(rec.wait_for(2));
  CHECK(s.srv().in_flight() == 2);
  rec.take(0)->send(text("one"));
  CHECK(eventually([&] { return s.srv().in_flight() == 1; }));
  rec.take(1).reset(); // dropped: answered 503
  CHECK(eventually([&] { return s.srv().in_flight() == 0; }));
  auto ra = a.read();
  auto rb = b.read();
  REQUIRE(ra);
  REQUIRE(rb);
  CHECK(ra->result_int() + rb->result_int() == 200 + 503);
}

TEST_CASE("an answer after the client left or the server died is harmless") {
  recorder rec;
  responder_ptr survivor;
  {
    test_server s({}, echo_or_hold(rec));
    {
      client gone(s.port());
      gone.send(get("/hold"));
      REQUIRE(rec.wait_for(1));
    }
    rec.take(0)->send(text("nobody listens"));
    CHECK(eventually([&] { return s.srv().in_flight() == 0; }));
    client next(s.port());
    next.send(get("/hold"));
    REQUIRE(rec.wait_for(2));
    survivor = rec.take(1);
  }
  survivor->send(text("too late")); // the server is gone: a no-op
  survivor.reset();
}

TEST_CASE("connections over max_connections are refused and counted") {
  recorder rec;
  server_options o;
  o.max_connections = 1;
  test_server s(o, echo_or_hold(rec));
  client first(s.port());
  first.send(get("/a"));
  REQUIRE(first.read());
  client second(s.port());
  auto res = second.read(1000ms);
  if (res)
    CHECK(res->result_int() == 503);
  CHECK(second.time_to_close(1000ms));
  CHECK(s.srv().stats().connections_rejected == 1);
  first.send(get("/b"));
  REQUIRE(first.read());
}

TEST_CASE("bind claims the port and refuses clients until start; a port in use fails bind") {
  recorder rec;
  asio::io_context io;
  auto work = asio::make_work_guard(io);
  server_options o;
  o.address = "127.0.0.1";
  o.port = 0;
  server srv(io, o, echo_or_hold(rec));
  auto port = srv.bind();
  REQUIRE(port != 0);
  std::thread runner([&] { io.run(); });
  CHECK_THROWS(client(port)); // bound, not listening: refused at once, not left waiting
  CHECK(srv.start() == port);
  client c(port);
  c.send(get("/now"));
  auto res = c.read();
  REQUIRE(res);
  CHECK(res->body() == "/now");

  server_options taken = o;
  taken.port = port;
  server second(io, taken, echo_or_hold(rec));
  try {
    second.bind();
    FAIL("binding a port in use did not throw");
  } catch (const std::system_error& e) {
    CHECK(std::string(e.what()).find("cannot bind 127.0.0.1:" + std::to_string(port)) !=
          std::string::npos);
  }
  work.reset();
  io.stop();
  runner.join();
}
