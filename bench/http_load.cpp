// The HTTP side of the bench: sessiond API v1 requests and a minimal HTTP/1.1 response parser.
//
// Hand-written instead of Beast's parser because it only has to find the status, the body
// framing and Connection: close, and it skips the body without copying it; on a typical
// sessiond answer it takes a fraction of Beast's time (docs/bench.md has the figures).
#include "bench/protocol.hpp"

#include <strings.h>

#include <algorithm>
#include <charconv>
#include <cstring>

namespace sessiond::bench {

namespace {

/// Case-insensitive "is the header line at [p, end) named `name`"; moves p past the colon.
bool header_is(const char*& p, const char* end, const char* name) {
  std::size_t n = std::strlen(name);
  if (static_cast<std::size_t>(end - p) <= n || p[n] != ':' || strncasecmp(p, name, n) != 0)
    return false;
  p += n + 1;
  while (p < end && (*p == ' ' || *p == '\t'))
    ++p;
  return true;
}

bool contains_token(const char* p, const char* end, const char* token) {
  std::size_t n = std::strlen(token);
  for (; p + n <= end; ++p)
    if (strncasecmp(p, token, n) == 0)
      return true;
  return false;
}

const char* find_crlf(const char* p, const char* end) {
  for (; p + 1 < end; ++p) {
    p = static_cast<const char*>(std::memchr(p, '\r', static_cast<std::size_t>(end - p - 1)));
    if (p == nullptr)
      return nullptr;
    if (p[1] == '\n')
      return p;
  }
  return nullptr;
}

/// One response at a time: head, then a body framed by length, chunks or close.
class http_parser final : public response_parser {
public:
  void reset() override {
    state_ = state::head;
    code_ = 0;
    keep_alive_ = true;
    remaining_ = 0;
    version_ = 0;
    error_ = "";
  }

  parse_result feed(const char*& p, const char* end) override {
    for (;;) {
      parse_result r = step(p, end);
      if (r != parse_result::done || state_ == state::done)
        return r;
    }
  }

  parse_result on_eof() override {
    if (state_ == state::until_close) {
      state_ = state::done;
      keep_alive_ = false;
      return parse_result::done;
    }
    return fail("connection closed mid-response");
  }

  int code() const override { return code_; }
  bool keep_alive() const override { return keep_alive_; }
  const char* error_text() const override { return error_; }
  std::uint64_t version() const override { return version_; }

private:
  enum class state { head, length, chunk_size, chunk_data, chunk_crlf, trailer, until_close, done };

  parse_result fail(const char* why) {
    error_ = why;
    return parse_result::error;
  }

  /// Advances one state; `done` with state_ != done means "go on".
  parse_result step(const char*& p, const char* end) {
    switch (state_) {
    case state::head:
      return parse_head(p, end);
    case state::length:
    case state::chunk_data:
    case state::chunk_crlf:
      return skip_body(p, end);
    case state::chunk_size:
      return parse_chunk_size(p, end);
    case state::trailer:
      return parse_trailer(p, end);
    case state::until_close:
      p = end;
      return parse_result::need_more;
    case state::done:
      return parse_result::done;
    }
    return fail("bad parser state");
  }

  parse_result parse_head(const char*& p, const char* end) {
    std::string_view avail(p, static_cast<std::size_t>(end - p));
    auto head_end = avail.find("\r\n\r\n");
    if (head_end == std::string_view::npos)
      return parse_result::need_more;
    const char* head_stop = p + head_end + 2; // keeps the CRLF of the last header line
    if (auto r = parse_status_line(p, head_stop); r != parse_result::done)
      return r;
    if (auto r = parse_headers(p, head_stop); r != parse_result::done)
      return r;
    p = head_stop + 2;
    return choose_body();
  }

  parse_result parse_status_line(const char*& p, const char* end) {
    const char* eol = find_crlf(p, end);
    if (eol == nullptr || eol - p < 12 || std::memcmp(p, "HTTP/1.", 7) != 0 || p[8] != ' ')
      return fail("bad status line");
    int code = 0;
    auto r = std::from_chars(p + 9, p + 12, code);
    if (r.ec != std::errc() || r.ptr != p + 12 || code < 100 || code > 599)
      return fail("bad status code");
    code_ = code;
    keep_alive_ = p[7] == '1'; // HTTP/1.1 defaults to keep-alive, 1.0 to close
    p = eol + 2;
    return parse_result::done;
  }

  parse_result parse_headers(const char*& p, const char* end) {
    content_length_ = -1;
    chunked_ = false;
    while (p < end) {
      const char* eol = find_crlf(p, end);
      if (eol == nullptr)
        return fail("bad header line");
      const char* v = p;
      if (header_is(v, eol, "content-length")) {
        std::uint64_t n = 0;
        auto r = std::from_chars(v, eol, n);
        if (r.ec != std::errc() || n > (std::uint64_t{1} << 40))
          return fail("bad Content-Length");
        content_length_ = static_cast<std::int64_t>(n);
      } else if (header_is(v, eol, "etag")) {
        // A strong tag "<n>" (docs/api.md); anything else leaves the version at 0.
        std::uint64_t n = 0;
        if (eol - v >= 3 && *v == '"' && eol[-1] == '"' &&
            std::from_chars(v + 1, eol - 1, n).ptr == eol - 1)
          version_ = n;
      } else if (header_is(v, eol, "transfer-encoding")) {
        chunked_ = contains_token(v, eol, "chunked");
      } else if (header_is(v, eol, "connection")) {
        if (contains_token(v, eol, "close"))
          keep_alive_ = false;
        else if (contains_token(v, eol, "keep-alive"))
          keep_alive_ = true;
      }
      p = eol + 2;
    }
    return parse_result::done;
  }

  parse_result choose_body() {
    if (code_ < 200) { // an interim 1xx answer: the real one follows
      state_ = state::head;
      return parse_result::done;
    }
    if (code_ == 204 || code_ == 304)
      state_ = state::done;
    else if (chunked_)
      state_ = state::chunk_size;
    else if (content_length_ >= 0)
      start_skip(state::length, static_cast<std::uint64_t>(content_length_));
    else
      state_ = state::until_close;
    return parse_result::done;
  }

  void start_skip(state s, std::uint64_t bytes) {
    state_ = bytes == 0 && s == state::length ? state::done : s;
    remaining_ = bytes;
  }

  parse_result skip_body(const char*& p, const char* end) {
    auto n = std::min<std::uint64_t>(remaining_, static_cast<std::uint64_t>(end - p));
    p += n;
    remaining_ -= n;
    if (remaining_ > 0)
      return parse_result::need_more;
    if (state_ == state::length)
      state_ = state::done;
    else if (state_ == state::chunk_data)
      start_skip(state::chunk_crlf, 2);
    else
      state_ = state::chunk_size;
    return parse_result::done;
  }

  parse_result parse_chunk_size(const char*& p, const char* end) {
    const char* eol = find_crlf(p, end);
    if (eol == nullptr)
      return parse_result::need_more;
    std::uint64_t size = 0;
    auto r = std::from_chars(p, eol, size, 16);
    if (r.ec != std::errc() || r.ptr == p)
      return fail("bad chunk size");
    p = eol + 2;
    if (size == 0)
      state_ = state::trailer;
    else
      start_skip(state::chunk_data, size);
    return parse_result::done;
  }

  parse_result parse_trailer(const char*& p, const char* end) {
    const char* eol = find_crlf(p, end);
    if (eol == nullptr)
      return parse_result::need_more;
    if (eol == p)
      state_ = state::done;
    p = eol + 2;
    return parse_result::done;
  }

  state state_ = state::head;
  int code_ = 0;
  bool keep_alive_ = true;
  bool chunked_ = false;
  std::int64_t content_length_ = -1;
  std::uint64_t remaining_ = 0;
  std::uint64_t version_ = 0;
  const char* error_ = "";
};

class http_protocol final : public protocol {
public:
  http_protocol(const target& t, std::size_t value_bytes)
      : host_line_("Host: " + t.host + ":" + std::to_string(t.port) + "\r\n"),
        data_(make_payload(value_bytes)) {}

  void encode(const request_spec& r, std::string& out) const override {
    static const char* methods[op_count] = {"GET", "PUT", "PATCH", "DELETE"};
    out += methods[static_cast<std::size_t>(r.operation)];
    out += " /v1/sessions/bench-";
    append_uint(out, r.n);
    out += " HTTP/1.1\r\n";
    out += host_line_;
    if (r.operation == op::put)
      append_put_body(r.n, out);
    else if (r.operation == op::patch)
      append_patch_body(r.counter, out);
    else
      out += "\r\n";
  }

  std::unique_ptr<response_parser> make_parser() const override {
    return std::make_unique<http_parser>();
  }

  bool expected(int code) const override { return code == 200 || code == 201 || code == 204; }
  std::string label(int code) const override { return std::to_string(code); }
  const char* name() const override { return "http"; }

private:
  static std::size_t digits(std::uint64_t v) {
    std::size_t d = 1;
    while (v >= 10) {
      v /= 10;
      ++d;
    }
    return d;
  }

  void append_put_body(std::uint64_t n, std::string& out) const {
    static constexpr std::string_view head = R"({"user_id":"u)";
    static constexpr std::string_view mid = R"(","data":)";
    std::uint64_t user = n % 1000;
    out += "Content-Type: application/json\r\nContent-Length: ";
    append_uint(out, head.size() + digits(user) + mid.size() + data_.size() + 1);
    out += "\r\n\r\n";
    out += head;
    append_uint(out, user);
    out += mid;
    out += data_;
    out += '}';
  }

  static void append_patch_body(std::uint64_t counter, std::string& out) {
    out += "Content-Type: application/merge-patch+json\r\nContent-Length: ";
    append_uint(out, 6 + digits(counter)); // {"p":N}
    out += "\r\n\r\n{\"p\":";
    append_uint(out, counter);
    out += '}';
  }

  std::string host_line_;
  std::string data_;
};

} // namespace

std::string make_payload(std::size_t bytes) {
  std::string out = R"({"v":")";
  out.append(bytes > 8 ? bytes - 8 : 0, 'x');
  out += "\"}";
  return out;
}

std::unique_ptr<protocol> make_http_protocol(const target& t, std::size_t value_bytes) {
  return std::make_unique<http_protocol>(t, value_bytes);
}

} // namespace sessiond::bench
