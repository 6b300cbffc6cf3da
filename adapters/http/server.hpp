// HTTP/1.1 server on Boost.Beast: keep-alive, body/header limits, header and idle timeouts.
// It knows nothing of sessions: every well-formed request goes to one handler function.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace boost::asio {
class io_context;
} // namespace boost::asio

namespace sessiond::http {

enum class method { get, head, put, post, patch, del, options, other };

/// One parsed request, owned by the handler once handed over.
struct request {
  method verb = method::other;
  std::string target; ///< path and query exactly as sent
  std::string body;
  std::string content_type;  ///< Content-Type header value, empty when absent
  std::string if_match;      ///< If-Match value, empty when absent
  std::string if_none_match; ///< If-None-Match value, empty when absent
  bool has_if_match = false;
  bool has_if_none_match = false;
  /// Authorization value, empty when absent; repeated fields joined with ", " (so a request
  /// carrying two is no valid bearer token). Never logged.
  std::string authorization;
  /// The client's IP address as text ("127.0.0.1", "::1"), empty when the socket cannot tell.
  std::string remote_address;
};

/// What the handler answers. Content-Length, Connection and Server are added by the server.
struct response {
  unsigned status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers; ///< extra: ETag, Retry-After, Allow…
};

/// Completes one request exactly once, from any thread. A responder destroyed without
/// having sent answers 503 (so a request whose owner died never hangs).
class responder {
public:
  virtual ~responder() = default;
  virtual void send(response&& r) = 0;
};
using responder_ptr = std::shared_ptr<responder>;

/// Called on an I/O thread for each request; must not block.
using handler = std::function<void(request&&, responder_ptr)>;

struct server_options {
  std::string address = "127.0.0.1";
  std::uint16_t port = 8080; ///< 0 picks a free port
  std::size_t max_body_bytes = 1 << 20;
  std::size_t max_header_bytes = 16 << 10;
  std::size_t max_connections = 10000;
  std::chrono::milliseconds header_timeout{5000}; ///< whole header (and body) must arrive within it
  std::chrono::milliseconds idle_timeout{60000};  ///< keep-alive connection with no request
};

/// Counters the server keeps; read from any thread.
struct server_stats {
  std::uint64_t connections_accepted = 0;
  std::uint64_t connections_open = 0;
  std::uint64_t requests = 0;
  std::uint64_t rejected_bad_request = 0; ///< malformed, oversized or timed-out requests
  std::uint64_t connections_rejected = 0; ///< closed at accept: max_connections reached
};

class server {
public:
  /// Runs on `io`; the caller runs io.run() on as many threads as it wants.
  server(boost::asio::io_context& io, server_options opts, handler h);
  /// Accepts on the first loop and spreads connections round-robin over all of them (one
  /// io_context per I/O thread): a connection's reads, handler calls and writes stay on its loop.
  server(const std::vector<boost::asio::io_context*>& loops, server_options opts, handler h);
  ~server();
  server(const server&) = delete;
  server& operator=(const server&) = delete;

  /// Binds without listening, so a node claims its port (a port in use fails here) before it
  /// starts anything else, while clients are still refused at once rather than left waiting.
  /// Returns the bound port; throws std::system_error naming the address.
  std::uint16_t bind();
  /// Listens and starts accepting, binding first if bind() was not called. Returns the bound
  /// port; throws std::system_error naming the address.
  std::uint16_t start();
  /// Stops accepting new connections; open connections finish their current request
  /// and close instead of waiting for the next one.
  void stop_accepting();
  /// Requests handed to the handler whose response is not written yet.
  std::size_t in_flight() const;
  server_stats stats() const;

private:
  struct impl;
  std::shared_ptr<impl> impl_;
};

/// An RFC 9457 problem: `application/problem+json` with type, title, status, detail.
/// `type` is a URN such as "urn:sessiond:problem:invalid-json" (or "about:blank").
response problem(unsigned status, std::string type, std::string title, std::string detail);

/// Reason phrase for a status code ("Not Found").
const char* reason(unsigned status);

} // namespace sessiond::http
