// The Redis baseline of the bench: raw RESP commands and a minimal incremental reply parser.
//
// Raw RESP rather than hiredis' redisReader: the reader builds a reply object per answer and
// the baseline must measure Redis, not the client; this parser only classifies and skips.
#include "bench/protocol.hpp"

#include <algorithm>
#include <charconv>
#include <cstring>

namespace sessiond::bench {

namespace {

void append_bulk(std::string& out, std::string_view s) {
  out += '$';
  append_uint(out, s.size());
  out += "\r\n";
  out += s;
  out += "\r\n";
}

std::string command(std::initializer_list<std::string_view> args) {
  std::string out = "*" + std::to_string(args.size()) + "\r\n";
  for (auto a : args)
    append_bulk(out, a);
  return out;
}

/// Parses one reply, nested arrays included, by counting the items still to read.
class resp_parser final : public response_parser {
public:
  void reset() override {
    items_left_ = 1;
    skip_ = 0;
    code_ = 0;
    error_ = "";
  }

  parse_result feed(const char*& p, const char* end) override {
    while (items_left_ > 0 || skip_ > 0) {
      if (skip_ > 0) {
        auto n = std::min<std::uint64_t>(skip_, static_cast<std::uint64_t>(end - p));
        p += n;
        skip_ -= n;
        if (skip_ > 0)
          return parse_result::need_more;
        continue;
      }
      parse_result r = item_header(p, end);
      if (r != parse_result::done)
        return r;
    }
    return parse_result::done;
  }

  int code() const override { return code_; }
  const char* error_text() const override { return error_; }

private:
  parse_result fail(const char* why) {
    error_ = why;
    return parse_result::error;
  }

  /// Reads one "<type><line>\r\n"; bulk payloads are skipped afterwards by feed().
  parse_result item_header(const char*& p, const char* end) {
    auto* eol = static_cast<const char*>(std::memchr(p, '\n', static_cast<std::size_t>(end - p)));
    if (eol == nullptr)
      return parse_result::need_more;
    if (eol - p < 2 || eol[-1] != '\r')
      return fail("bad RESP line");
    char type = *p;
    std::int64_t n = 0;
    bool sized = type == '$' || type == '*';
    if (sized) {
      auto r = std::from_chars(p + 1, eol - 1, n);
      if (r.ec != std::errc() || r.ptr != eol - 1 || n < -1)
        return fail("bad RESP length");
    }
    p = eol + 1;
    --items_left_;
    return classify(type, n);
  }

  parse_result classify(char type, std::int64_t n) {
    int code = 0;
    switch (type) {
    case '+':
      code = redis_code::status;
      break;
    case '-':
      code = redis_code::error;
      break;
    case ':':
      code = redis_code::integer;
      break;
    case '$':
      code = n < 0 ? redis_code::nil : redis_code::bulk;
      skip_ = n < 0 ? 0 : static_cast<std::uint64_t>(n) + 2;
      break;
    case '*':
      code = n < 0 ? redis_code::nil : redis_code::array;
      items_left_ += n < 0 ? 0 : static_cast<std::uint64_t>(n);
      break;
    default:
      return fail("unknown RESP type");
    }
    if (code_ == 0)
      code_ = code; // the outermost item decides
    return parse_result::done;
  }

  std::uint64_t items_left_ = 1;
  std::uint64_t skip_ = 0;
  int code_ = 0;
  const char* error_ = "";
};

class redis_protocol final : public protocol {
public:
  redis_protocol(const target& t, std::size_t value_bytes)
      : target_(t), value_(make_payload(value_bytes)) {
    value_header_ = "$" + std::to_string(value_.size()) + "\r\n";
  }

  void encode(const request_spec& r, std::string& out) const override {
    static constexpr std::string_view heads[op_count] = {
        "*2\r\n$3\r\nGET\r\n", "*3\r\n$3\r\nSET\r\n", "*3\r\n$3\r\nSET\r\n", "*2\r\n$3\r\nDEL\r\n"};
    char key[32] = "bench:";
    auto k = std::to_chars(key + 6, key + sizeof key, r.n);
    out += heads[static_cast<std::size_t>(r.operation)];
    append_bulk(out, std::string_view(key, static_cast<std::size_t>(k.ptr - key)));
    if (r.operation == op::put || r.operation == op::patch) {
      out += value_header_;
      out += value_;
      out += "\r\n";
    }
  }

  std::unique_ptr<response_parser> make_parser() const override {
    return std::make_unique<resp_parser>();
  }

  std::string handshake(std::size_t& replies) const override {
    std::string out;
    replies = 0;
    if (!target_.password.empty()) {
      out += target_.user.empty() ? command({"AUTH", target_.password})
                                  : command({"AUTH", target_.user, target_.password});
      ++replies;
    }
    if (target_.db != 0) {
      out += command({"SELECT", std::to_string(target_.db)});
      ++replies;
    }
    return out;
  }

  bool expected(int code) const override { return code != redis_code::error; }

  std::string label(int code) const override {
    static const char* names[] = {"?", "status", "bulk", "nil", "integer", "error", "array"};
    return code >= 1 && code <= 6 ? names[code] : std::to_string(code);
  }

  const char* name() const override { return "redis"; }

private:
  target target_;
  std::string value_;
  std::string value_header_;
};

} // namespace

std::unique_ptr<protocol> make_redis_protocol(const target& t, std::size_t value_bytes) {
  return std::make_unique<redis_protocol>(t, value_bytes);
}

} // namespace sessiond::bench
