// Asynchronous HTTP/1.1 client for outgoing calls (the job queue's webhooks): keep-alive pools
// per host, a bounded wait queue, one deadline per request, HTTPS with verified certificates.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace boost::asio {
class io_context;
} // namespace boost::asio

namespace sessiond::http {

/// Why a request got no HTTP response. A response of any status (also 4xx/5xx) is `ok`.
enum class client_errc {
  ok = 0,
  bad_url,            ///< the URL, method or a header cannot be sent as given
  resolve_failed,     ///< the host name did not resolve
  connect_failed,     ///< no TCP connection to any address of the host
  tls_failed,         ///< TLS handshake failed: certificate, host name or protocol
  timeout,            ///< the request's deadline passed (queued, connecting, sending or reading)
  connection_lost,    ///< the connection closed or broke before the response was complete
  response_too_large, ///< the response header or body went over the limit
  protocol,           ///< the peer's answer is not valid HTTP/1.1
  overloaded,         ///< max_queued requests are already waiting for a connection
  closed,             ///< the client was stopped
};

const char* to_string(client_errc e);

/// An http:// or https:// URL taken apart for sending.
struct parsed_url {
  bool tls = false;
  std::string host; ///< lower case; an IPv6 address without its brackets
  std::uint16_t port = 0;
  std::string target; ///< path and query, "/" when the path is empty; the fragment is dropped
  std::string authorization; ///< "Basic …" from user:password@ (percent-decoded), else empty
};

/// http:// or https:// only; [v6] hosts; default ports 80/443. False with `error` set
/// (one line, for the operator) otherwise; `out` is then left as it was.
bool parse_http_url(std::string_view url, parsed_url& out, std::string& error);

struct client_options {
  std::size_t max_connections_per_host = 64; ///< idle+busy connections per host:port; requests
                                             ///< beyond wait in a bounded queue
  std::size_t max_queued = 10000; ///< waiting requests across hosts; beyond: overloaded at once
  std::chrono::milliseconds idle_timeout{30000}; ///< an idle kept-alive connection is closed
                                                 ///< after this; 0 keeps none
  std::size_t max_response_bytes = 1 << 20;      ///< body after de-chunking
  std::string tls_ca_file;                       ///< PEM; empty: the system's CA store
  std::string user_agent = "sessiond";
};

struct outgoing_request {
  std::string url;
  std::string method = "POST";
  std::string content_type = "application/json"; ///< sent when the body is not empty
  /// Extra headers, e.g. Idempotency-Key; User-Agent and Authorization here replace the
  /// client's. Host, Content-Length, Content-Type, Transfer-Encoding and Connection are the
  /// client's own and give bad_url.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  /// The whole exchange, counted from request(): waiting for a connection, resolve, connect,
  /// TLS, write and read.
  std::chrono::milliseconds timeout{10000};
};

struct incoming_response {
  client_errc error = client_errc::ok;
  std::string detail; ///< when error != ok: what failed, one line ("connect to 127.0.0.1:9:
                      ///< Connection refused")
  unsigned status = 0;
  std::string content_type;
  std::string body;
};

/// Thread-safe. Callbacks run exactly once, on the client's io_context thread(s), never inside
/// request(); an exception from one is swallowed. `io` must outlive the client's work: run it
/// until every callback ran.
class client {
public:
  /// Throws std::runtime_error when tls_ca_file cannot be loaded, std::invalid_argument when
  /// max_connections_per_host is 0.
  client(boost::asio::io_context& io, client_options opts);
  ~client(); ///< stop()
  client(const client&) = delete;
  client& operator=(const client&) = delete;

  void request(outgoing_request req, std::function<void(incoming_response&&)> done);
  /// Fails queued and running requests with client_errc::closed (their callbacks still run
  /// once, maybe after stop returns, while io runs); later requests fail at once with closed.
  void stop();

  struct stats_t {
    std::uint64_t requests = 0;
    std::uint64_t failures = 0;           ///< completed with error != ok (an HTTP 500 is not one)
    std::uint64_t connections_opened = 0; ///< TCP connects that succeeded
    std::uint64_t connections_reused = 0; ///< exchanges started on a kept-alive connection
  };
  stats_t stats() const;

private:
  struct impl;
  std::shared_ptr<impl> impl_;
};

} // namespace sessiond::http
