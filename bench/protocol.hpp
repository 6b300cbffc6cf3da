// What the load engine needs from a wire protocol: encode one request, parse one response.
#pragma once

#include "bench/options.hpp"

#include <charconv>
#include <cstdint>
#include <memory>
#include <string>

namespace sessiond::bench {

/// Appends the decimal digits of `v` (request and RESP encoders share it).
inline void append_uint(std::string& out, std::uint64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

enum class parse_result { need_more, done, error };

/// Incremental parser of one response at a time, owned by one connection (one thread).
class response_parser {
public:
  virtual ~response_parser() = default;
  /// Forgets the previous response.
  virtual void reset() = 0;
  /// Consumes bytes from [p, end) and advances `p` past what it used. A parser may leave
  /// bytes unconsumed while it waits for a complete header line or block; `need_more`
  /// then asks for more bytes appended after them.
  virtual parse_result feed(const char*& p, const char* end) = 0;
  /// The peer closed the connection: `done` when that ends the response (HTTP bodies
  /// delimited by close), `error` otherwise.
  virtual parse_result on_eof() { return parse_result::error; }
  /// The response's code: the HTTP status, or a redis_code value.
  virtual int code() const = 0;
  /// False when the server will close after this response.
  virtual bool keep_alive() const { return true; }
  /// Why the last `error` happened.
  virtual const char* error_text() const = 0;
  /// The version the response's `ETag: "<n>"` carries; 0 when it had none (or not HTTP).
  virtual std::uint64_t version() const { return 0; }
};

/// One request the engine sends: an operation on session `n`; `counter` varies PATCH bodies.
struct request_spec {
  op operation;
  std::uint64_t n;
  std::uint64_t counter;
};

/// Stateless encoder and factory, shared read-only by all threads.
class protocol {
public:
  virtual ~protocol() = default;
  /// Appends the wire bytes of `r` to `out` (which the caller cleared).
  virtual void encode(const request_spec& r, std::string& out) const = 0;
  virtual std::unique_ptr<response_parser> make_parser() const = 0;
  /// Bytes to send right after connecting and how many replies they produce (Redis AUTH and
  /// SELECT); a reply with code() that is not `expected` fails the connection.
  virtual std::string handshake(std::size_t& replies) const {
    replies = 0;
    return {};
  }
  /// The codes that count as success (HTTP 200/201/204; Redis anything but an error).
  virtual bool expected(int code) const = 0;
  /// How a code is shown in the report: "200", "nil", "error".
  virtual std::string label(int code) const = 0;
  /// "http" or "redis".
  virtual const char* name() const = 0;
};

/// Redis reply kinds, used as codes by the Redis protocol.
enum redis_code : int { status = 1, bulk = 2, nil = 3, integer = 4, error = 5, array = 6 };

/// The serialized session data: {"v":"xxx…"} padded to exactly `bytes` (>= 8) bytes.
std::string make_payload(std::size_t bytes);

/// Sessiond's HTTP API v1 on /v1/sessions/bench-<n>.
std::unique_ptr<protocol> make_http_protocol(const target& t, std::size_t value_bytes);

/// Raw RESP commands on keys bench:<n>: GET; SET for put and patch; DEL.
std::unique_ptr<protocol> make_redis_protocol(const target& t, std::size_t value_bytes);

} // namespace sessiond::bench
