// `sessiond-bench cache`: the cache-aside capability (docs/cache.md) beside its raw baselines, in
// one run, on the bench's load engine (bench/worker.cpp: keep-alive connections, one request in
// flight on each, closed loop):
//   near      GET /v1/cache/hit_near/k<i> of prefilled keys, the near cache on
//   no-near   the same on hit_redis, near_cache_entries = 0: every read is one Redis GET
//   redis     raw GET of the same number of keys with values of the same size
//   zipf      GET /v1/cache/zipf/k<i>, keys drawn Zipf(s) over a PostgreSQL table the namespace's
//             loader reads, from a cold cache
//   postgres  the loader's SELECT sent straight to PostgreSQL (extended protocol, one prepared
//             statement), the same key sequence (and connections, unless --postgres-connections):
//             every request is a query
// It starts its own sessiond (a child process with a generated TOML file), creates the table in a
// scratch schema, and reads CPU per request of sessiond, Redis and PostgreSQL (/proc, INFO cpu).
//
// One file although it passes ~800 lines: its wire encoders, key draws, child process and report
// serve this bench alone and share one set of arguments.
#include "bench/cache_bench.hpp"

#include "bench/load.hpp"
#include "bench/options.hpp"
#include "bench/proc_cpu.hpp"
#include "bench/protocol.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nlohmann/json.hpp>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <thread>

extern char** environ; // NOLINT(readability-redundant-declaration): posix_spawn's environment

namespace sessiond::bench {

namespace {

using json = nlohmann::ordered_json; // phases print in the order they ran
using steady = std::chrono::steady_clock;
using namespace std::chrono_literals;

struct cache_args {
  std::string redis_url;
  target redis;
  std::string postgres_url;
  std::string sessiond; ///< empty: <this binary's dir>/../app/sessiond
  std::size_t connections = 64;
  std::size_t pg_connections = 0; ///< the postgres phase's; 0: --connections
  std::size_t threads = 1;
  std::chrono::nanoseconds duration = 10s; ///< each hit-path phase's window
  std::chrono::nanoseconds warmup = 2s;    ///< before each hit-path window, not recorded
  std::chrono::nanoseconds zipf_duration = 15s;
  std::chrono::nanoseconds timeout = 5s;
  std::uint64_t keys = 10000;
  std::size_t value_bytes = 512;
  std::int64_t near_ttl_ms = 600000; ///< hit_near's near_ttl_ms: every read of the window near
  std::int64_t near_entries = 0;     ///< hit_near's near_cache_entries; 0: keys + a quarter
  std::uint64_t zipf_keys = 100000;
  double zipf_s = 0.99;
  std::int64_t zipf_ttl_s = 300;
  std::int64_t zipf_near_entries = 10000; ///< the namespace defaults
  std::int64_t zipf_near_ttl_ms = 1000;
  std::int64_t pool_size = 4; ///< the node's postgres.pool_size (the loaders' pool has as many)
  std::string key_prefix = "cache-bench:";
  std::string schema = "cache_bench";
  std::vector<std::string> phases{"near", "no-near", "redis", "zipf", "postgres"};
  bool json_out = false;
};

constexpr const char* help =
    R"(usage: sessiond-bench cache --redis-url URL --postgres-url URL [--sessiond PATH]
       [--phases LIST] [--connections N] [--threads T] [--duration D] [--warmup D]
       [--keys N] [--value-bytes B] [--near-entries N] [--near-ttl-ms MS] [--zipf-duration D]
       [--zipf-keys N] [--zipf-s S] [--zipf-ttl-s S] [--zipf-near-entries N]
       [--zipf-near-ttl-ms MS] [--pool-size N] [--postgres-connections N] [--key-prefix P]
       [--schema S] [--timeout D] [--json]

The cache (GET /v1/cache/{ns}/{key}) beside raw Redis and PostgreSQL, in one run. Starts its own
sessiond (--sessiond, default ../app/sessiond next to this binary) with a generated TOML file
(namespaces hit_near, hit_redis, zipf), key prefix --key-prefix, PostgreSQL schema --schema, in
which it creates table bench_items with --zipf-keys rows (dropped and created again each run).
Phases (--phases, comma-separated, run in the order given):
  near      GET of --keys prefilled keys (uniform) through sessiond, near cache on
  no-near   the same with near_cache_entries = 0 (one Redis GET per read)
  redis     raw GET of --keys keys with --value-bytes values on the same Redis
  zipf      GET of keys drawn Zipf(--zipf-s) over the table, for --zipf-duration from a cold
            cache (the namespace is invalidated first): hit ratio, loads/s, distinct keys
  postgres  the loader's SELECT straight to PostgreSQL (trust authentication only), the same
            key sequence as zipf on --postgres-connections (default --connections)
            connections: queries/s without the cache
Hit-path phases run --warmup (prefill included) then --duration; CPU per request of sessiond
(/proc), Redis (INFO cpu), PostgreSQL (/proc: postmaster and backends) and the bench over the
window. Keys stay in Redis (prefix --key-prefix); the table stays in --schema.
)";

// --- flags ------------------------------------------------------------------------------------

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, ',');)
    if (!item.empty())
      out.push_back(item);
  return out;
}

bool wants(const cache_args& a, const char* phase) {
  return std::find(a.phases.begin(), a.phases.end(), phase) != a.phases.end();
}

bool needs_node(const cache_args& a) {
  return wants(a, "near") || wants(a, "no-near") || wants(a, "zipf");
}

bool needs_table(const cache_args& a) {
  return wants(a, "zipf") || wants(a, "postgres");
}

void check_args(cache_args& s) {
  static const std::vector<std::string> known{"near", "no-near", "redis", "zipf", "postgres"};
  if (s.phases.empty())
    throw usage_error("--phases: none given");
  for (const auto& p : s.phases)
    if (std::find(known.begin(), known.end(), p) == known.end())
      throw usage_error("--phases: unknown phase " + p + " (near, no-near, redis, zipf, postgres)");
  if (s.redis_url.empty())
    throw usage_error("--redis-url is required");
  s.redis = parse_url("--redis-url", s.redis_url, "redis");
  if (s.postgres_url.empty() && (needs_node(s) || needs_table(s)))
    throw usage_error("--postgres-url is required (the node needs one; zipf and postgres read it)");
  if (s.pg_connections == 0)
    s.pg_connections = s.connections;
  if (s.threads > std::min(s.connections, s.pg_connections))
    throw usage_error("--threads must not exceed --connections (or --postgres-connections)");
  if (!(s.zipf_s > 0) || s.zipf_s > 5)
    throw usage_error("--zipf-s must be in (0, 5]");
}

cache_args parse(const std::vector<std::string>& a) {
  cache_args s;
  for (std::size_t i = 0; i < a.size(); ++i) {
    std::string flag = a[i], inline_value;
    bool has_inline = false;
    if (auto eq = flag.find('='); flag.rfind("--", 0) == 0 && eq != std::string::npos) {
      inline_value = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
      has_inline = true;
    }
    auto next = [&]() -> std::string {
      if (has_inline)
        return inline_value;
      if (i + 1 >= a.size())
        throw usage_error(flag + " needs a value");
      return a[++i];
    };
    auto whole = [&](std::uint64_t lo, std::uint64_t hi) {
      return parse_whole(flag, next(), lo, hi);
    };
    auto signed_whole = [&](std::uint64_t lo, std::uint64_t hi) {
      return static_cast<std::int64_t>(whole(lo, hi));
    };
    if (flag == "--redis-url")
      s.redis_url = next();
    else if (flag == "--postgres-url")
      s.postgres_url = next();
    else if (flag == "--sessiond")
      s.sessiond = next();
    else if (flag == "--phases")
      s.phases = split_list(next());
    else if (flag == "--connections")
      s.connections = whole(1, 10000);
    else if (flag == "--postgres-connections")
      s.pg_connections = whole(1, 10000);
    else if (flag == "--threads")
      s.threads = whole(1, 64);
    else if (flag == "--duration")
      s.duration = parse_duration(flag, next());
    else if (flag == "--warmup")
      s.warmup = parse_duration(flag, next());
    else if (flag == "--zipf-duration")
      s.zipf_duration = parse_duration(flag, next());
    else if (flag == "--timeout")
      s.timeout = parse_duration(flag, next());
    else if (flag == "--keys")
      s.keys = whole(1, 10000000);
    else if (flag == "--value-bytes")
      s.value_bytes = whole(8, 1 << 20);
    else if (flag == "--near-entries")
      s.near_entries = signed_whole(1, 10000000);
    else if (flag == "--near-ttl-ms")
      s.near_ttl_ms = signed_whole(1, 3600000);
    else if (flag == "--zipf-keys")
      s.zipf_keys = whole(1, 100000000);
    else if (flag == "--zipf-s")
      s.zipf_s = parse_number(flag, next());
    else if (flag == "--zipf-ttl-s")
      s.zipf_ttl_s = signed_whole(1, 31536000);
    else if (flag == "--zipf-near-entries")
      s.zipf_near_entries = signed_whole(0, 10000000);
    else if (flag == "--zipf-near-ttl-ms")
      s.zipf_near_ttl_ms = signed_whole(1, 3600000);
    else if (flag == "--pool-size")
      s.pool_size = signed_whole(1, 64);
    else if (flag == "--key-prefix")
      s.key_prefix = next();
    else if (flag == "--schema")
      s.schema = next();
    else if (flag == "--json")
      s.json_out = true;
    else if (flag == "--help") {
      std::cout << help;
      std::exit(0);
    } else
      throw usage_error("unknown argument " + a[i]);
  }
  check_args(s);
  return s;
}

// --- keys -------------------------------------------------------------------------------------

std::uint64_t mix64(std::uint64_t z) { // splitmix64's finalizer: a bijection of 64 bits
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/// Turns the load engine's uniform draw (request_spec::n, below space()) into a key id in
/// [0, keys): uniform, or Zipf(s) by inverting its CDF (id 0 the most popular). A salt gives the
/// warmup a sequence of its own; the same salt gives two phases the same sequence. Marks every id
/// it hands out, from the worker threads, so a phase can count its distinct keys.
class key_source {
public:
  key_source(std::uint64_t keys, double zipf_s) : keys_(keys), seen_((keys + 63) / 64) {
    if (zipf_s <= 0)
      return;
    cdf_.resize(keys);
    double sum = 0;
    for (std::uint64_t k = 0; k < keys; ++k)
      cdf_[k] = sum += std::pow(static_cast<double>(k + 1), -zipf_s);
    for (auto& c : cdf_)
      c /= sum;
  }

  /// The `sessions` of the phase: the range of the engine's draws.
  std::uint64_t space() const {
    return cdf_.empty() ? keys_ : std::numeric_limits<std::uint64_t>::max();
  }

  std::uint64_t id(std::uint64_t n, std::uint64_t salt) const {
    std::uint64_t id = 0;
    if (cdf_.empty()) {
      id = (n + salt * 0x9e3779b97f4a7c15ULL % keys_) % keys_; // a rotation: prefill covers all
    } else {
      double u = static_cast<double>(mix64(n + salt * 0x9e3779b97f4a7c15ULL) >> 11) * 0x1.0p-53;
      id = static_cast<std::uint64_t>(std::lower_bound(cdf_.begin(), cdf_.end(), u) - cdf_.begin());
      id = std::min(id, keys_ - 1);
    }
    seen_[id >> 6].fetch_or(std::uint64_t{1} << (id & 63), std::memory_order_relaxed);
    return id;
  }

  void forget_seen() {
    for (auto& w : seen_)
      w.store(0, std::memory_order_relaxed);
  }
  std::uint64_t distinct_seen() const {
    std::uint64_t n = 0;
    for (const auto& w : seen_)
      n += static_cast<std::uint64_t>(__builtin_popcountll(w.load(std::memory_order_relaxed)));
    return n;
  }
  /// The probability of the most popular key (Zipf only).
  double top_share() const { return cdf_.empty() ? 1.0 / static_cast<double>(keys_) : cdf_[0]; }

private:
  std::uint64_t keys_;
  std::vector<double> cdf_;
  mutable std::vector<std::atomic<std::uint64_t>> seen_;
};

// --- what the load engine sends ------------------------------------------------------------

/// GET (and, for the prefill, PUT) /v1/cache/<ns>/k<id>; the response parser is the bench's HTTP
/// parser (bench/http_load.cpp).
class cache_http final : public protocol {
public:
  cache_http(const target& t, const std::string& ns, const key_source& keys, std::uint64_t salt,
             std::size_t value_bytes)
      : inner_(make_http_protocol(t, 8)),
        keys_(keys),
        salt_(salt),
        path_("/v1/cache/" + ns + "/k"),
        host_line_("Host: " + t.host + ":" + std::to_string(t.port) + "\r\n"),
        value_(make_payload(value_bytes)) {}

  void encode(const request_spec& r, std::string& out) const override {
    bool put = r.operation == op::put;
    out += put ? "PUT " : "GET ";
    out += path_;
    append_uint(out, keys_.id(r.n, salt_));
    out += " HTTP/1.1\r\n";
    out += host_line_;
    if (!put) {
      out += "\r\n";
      return;
    }
    out += "Content-Type: application/json\r\nContent-Length: ";
    append_uint(out, value_.size());
    out += "\r\n\r\n";
    out += value_;
  }
  std::unique_ptr<response_parser> make_parser() const override { return inner_->make_parser(); }
  bool expected(int code) const override { return inner_->expected(code); }
  std::string label(int code) const override { return inner_->label(code); }
  const char* name() const override { return "http"; }

private:
  std::unique_ptr<protocol> inner_;
  const key_source& keys_;
  std::uint64_t salt_;
  std::string path_, host_line_, value_;
};

void append_bulk(std::string& out, std::string_view s) {
  out += '$';
  append_uint(out, s.size());
  out += "\r\n";
  out += s;
  out += "\r\n";
}

/// Raw GET (SET for the prefill) of <prefix>raw:k<id>; parser and AUTH/SELECT from the bench's
/// Redis baseline (bench/redis_load.cpp).
class raw_redis final : public protocol {
public:
  raw_redis(const target& t, const std::string& prefix, const key_source& keys, std::uint64_t salt,
            std::size_t value_bytes)
      : inner_(make_redis_protocol(t, value_bytes)),
        keys_(keys),
        salt_(salt),
        prefix_(prefix + "raw:k"),
        value_(make_payload(value_bytes)) {}

  void encode(const request_spec& r, std::string& out) const override {
    bool set = r.operation == op::put;
    out += set ? "*3\r\n$3\r\nSET\r\n" : "*2\r\n$3\r\nGET\r\n";
    std::string key = prefix_;
    append_uint(key, keys_.id(r.n, salt_));
    append_bulk(out, key);
    if (set)
      append_bulk(out, value_);
  }
  std::unique_ptr<response_parser> make_parser() const override { return inner_->make_parser(); }
  std::string handshake(std::size_t& replies) const override { return inner_->handshake(replies); }
  bool expected(int code) const override { return inner_->expected(code); }
  std::string label(int code) const override { return inner_->label(code); }
  const char* name() const override { return "redis"; }

private:
  std::unique_ptr<protocol> inner_;
  const key_source& keys_;
  std::uint64_t salt_;
  std::string prefix_, value_;
};

/// PostgreSQL's reply codes as the load engine counts them.
enum pg_code : int { pg_row = 1, pg_no_row = 2 };

void put32(std::string& out, std::uint32_t v) {
  char b[4] = {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
               static_cast<char>(v)};
  out.append(b, 4);
}

void put16(std::string& out, std::uint16_t v) {
  out += static_cast<char>(v >> 8);
  out += static_cast<char>(v);
}

std::uint32_t get32(const char* p) {
  auto b = reinterpret_cast<const unsigned char*>(p);
  return (std::uint32_t{b[0]} << 24) | (std::uint32_t{b[1]} << 16) | (std::uint32_t{b[2]} << 8) |
         b[3];
}

/// One reply of the extended protocol: every message up to ReadyForQuery. Message bodies are
/// skipped without copying, except ErrorResponse (its text ends the connection: a failing
/// statement is a broken bench) and Authentication (only "ok" is accepted).
class pg_parser final : public response_parser {
public:
  void reset() override {
    skip_ = 0;
    row_ = false;
    code_ = 0;
  }

  parse_result feed(const char*& p, const char* end) override {
    for (;;) {
      if (skip_ > 0) {
        auto n = std::min<std::uint64_t>(skip_, static_cast<std::uint64_t>(end - p));
        p += n;
        skip_ -= n;
        if (skip_ > 0)
          return parse_result::need_more;
      }
      if (end - p < 5)
        return parse_result::need_more;
      char type = p[0];
      std::uint32_t len = get32(p + 1);
      if (len < 4 || len > (1U << 30))
        return fail("bad PostgreSQL message length");
      std::size_t body = len - 4;
      bool whole = static_cast<std::size_t>(end - p) >= 5 + body;
      if (type == 'E' || type == 'R' || type == 'Z') {
        if (body > 8192)
          return fail("PostgreSQL message too large");
        if (!whole)
          return parse_result::need_more;
        if (type == 'E')
          return fail(error_message(p + 5, body));
        if (type == 'R' && (body < 4 || get32(p + 5) != 0))
          return fail("PostgreSQL asks for authentication; the postgres phase speaks the wire "
                      "protocol with trust authentication only (as scripts/services sets up)");
        p += 5 + body;
        if (type == 'Z') {
          code_ = row_ ? pg_row : pg_no_row;
          return parse_result::done;
        }
        continue;
      }
      row_ = row_ || type == 'D';
      p += 5;
      skip_ = body;
    }
  }

  int code() const override { return code_; }
  const char* error_text() const override { return error_.c_str(); }

private:
  parse_result fail(std::string why) {
    error_ = std::move(why);
    return parse_result::error;
  }
  static std::string error_message(const char* p, std::size_t n) {
    std::string severity, message;
    for (std::size_t i = 0; i < n && p[i] != 0;) {
      char field = p[i++];
      std::string value(p + i, strnlen(p + i, n - i));
      i += value.size() + 1;
      if (field == 'S')
        severity = value;
      else if (field == 'M')
        message = value;
    }
    return "PostgreSQL: " + severity + ": " + message;
  }

  std::uint64_t skip_ = 0;
  bool row_ = false;
  int code_ = 0;
  std::string error_;
};

struct pg_target {
  target where; ///< host and port
  std::string user, database;
};

/// The loader's statement on PostgreSQL's extended protocol: prepared once per connection (the
/// handshake), then Bind/Execute/Sync with the key as the text parameter $1.
class pg_wire final : public protocol {
public:
  pg_wire(pg_target t, const std::string& sql, const key_source& keys, std::uint64_t salt)
      : t_(std::move(t)), sql_(sql), keys_(keys), salt_(salt) {}

  std::string handshake(std::size_t& replies) const override {
    std::string params;
    put32(params, 196608); // protocol 3.0
    for (auto [k, v] : {std::pair<const char*, const std::string*>{"user", &t_.user},
                        {"database", &t_.database}}) {
      params.append(k).push_back('\0');
      params.append(*v).push_back('\0');
    }
    params.append("application_name").push_back('\0');
    params.append("sessiond-bench-cache").push_back('\0');
    params.push_back('\0');
    std::string out;
    put32(out, static_cast<std::uint32_t>(params.size() + 4));
    out += params;
    out += 'P'; // Parse "s": no parameter types given, the server infers text for $1
    put32(out, static_cast<std::uint32_t>(4 + 2 + sql_.size() + 1 + 2));
    out.append("s").push_back('\0');
    out.append(sql_).push_back('\0');
    put16(out, 0);
    sync(out);
    replies = 2; // the startup's ReadyForQuery, the Parse's
    return out;
  }

  void encode(const request_spec& r, std::string& out) const override {
    std::string key = "k";
    append_uint(key, keys_.id(r.n, salt_));
    out += 'B';
    put32(out, static_cast<std::uint32_t>(4 + 1 + 2 + 2 + 2 + 4 + key.size() + 2));
    out.push_back('\0'); // the unnamed portal
    out.append("s").push_back('\0');
    put16(out, 0); // parameters in text
    put16(out, 1);
    put32(out, static_cast<std::uint32_t>(key.size()));
    out += key;
    put16(out, 0); // results in text
    out += 'E';
    put32(out, 9);
    out.push_back('\0');
    put32(out, 0);
    sync(out);
  }

  std::unique_ptr<response_parser> make_parser() const override {
    return std::make_unique<pg_parser>();
  }
  bool expected(int code) const override { return code == pg_row || code == pg_no_row; }
  std::string label(int code) const override {
    return code == pg_row ? "row" : code == pg_no_row ? "no row" : std::to_string(code);
  }
  const char* name() const override { return "postgres"; }

private:
  static void sync(std::string& out) {
    out += 'S';
    put32(out, 4);
  }
  pg_target t_;
  std::string sql_;
  const key_source& keys_;
  std::uint64_t salt_;
};

// --- blocking helpers: one HTTP call, Redis INFO, libpq -------------------------------------

struct http_reply {
  int status = 0;
  std::string body;
};

/// One request on a connection of its own (Connection: close); throws std::runtime_error.
http_reply http_call(const target& t, const std::string& method, const std::string& path,
                     const std::string& body = {}) {
  addrinfo hints{}, *res = nullptr;
  hints.ai_socktype = SOCK_STREAM;
  if (getaddrinfo(t.host.c_str(), std::to_string(t.port).c_str(), &hints, &res) != 0 || !res)
    throw std::runtime_error("cannot resolve " + t.host);
  int fd = ::socket(res->ai_family, SOCK_STREAM, 0);
  bool ok = fd >= 0 && ::connect(fd, res->ai_addr, res->ai_addrlen) == 0;
  freeaddrinfo(res);
  auto closer = std::unique_ptr<int, void (*)(int*)>(&fd, [](int* f) {
    if (*f >= 0)
      ::close(*f);
  });
  if (!ok)
    throw std::runtime_error(method + " " + path + ": cannot connect: " + std::strerror(errno));
  timeval tv{30, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::string req =
      method + " " + path + " HTTP/1.1\r\nHost: " + t.host + "\r\nConnection: close\r\n";
  if (!body.empty())
    req +=
        "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  req += "\r\n" + body;
  if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size()))
    throw std::runtime_error(method + " " + path + ": send failed");
  std::string in;
  char buf[65536];
  for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;)
    in.append(buf, static_cast<std::size_t>(n));
  auto head_end = in.find("\r\n\r\n");
  if (in.size() < 12 || in.rfind("HTTP/1.", 0) != 0 || head_end == std::string::npos)
    throw std::runtime_error(method + " " + path + ": no HTTP response");
  return {std::atoi(in.c_str() + 9), in.substr(head_end + 4)};
}

using reply_ptr = std::unique_ptr<redisReply, void (*)(void*)>;

/// Redis' own CPU time from INFO cpu, on a hiredis connection of its own.
class redis_meter {
public:
  explicit redis_meter(const target& t)
      : c_(redisConnectWithTimeout(t.host.c_str(), t.port, {5, 0})) {
    if (!c_ || c_->err)
      throw std::runtime_error("cannot connect to Redis at " + shown_url(t));
    if (!t.password.empty()) {
      auto r =
          t.user.empty() ? command({"AUTH", t.password}) : command({"AUTH", t.user, t.password});
      if (r->type == REDIS_REPLY_ERROR)
        throw std::runtime_error("Redis refused AUTH: " + std::string(r->str, r->len));
    }
  }
  ~redis_meter() { redisFree(c_); }
  redis_meter(const redis_meter&) = delete;
  redis_meter& operator=(const redis_meter&) = delete;

  double cpu_s() {
    auto r = command({"INFO", "cpu"});
    std::string info = r->type == REDIS_REPLY_STRING ? std::string(r->str, r->len) : "";
    return field(info, "used_cpu_sys:") + field(info, "used_cpu_user:");
  }

private:
  reply_ptr command(const std::vector<std::string>& args) {
    std::vector<const char*> argv;
    std::vector<std::size_t> lens;
    for (const auto& a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    void* r = redisCommandArgv(c_, static_cast<int>(args.size()), argv.data(), lens.data());
    if (!r)
      throw std::runtime_error(std::string("Redis: ") + c_->errstr);
    return reply_ptr(static_cast<redisReply*>(r), freeReplyObject);
  }
  static double field(const std::string& info, const std::string& key) {
    auto at = info.find(key);
    return at == std::string::npos ? 0.0 : std::strtod(info.c_str() + at + key.size(), nullptr);
  }
  redisContext* c_;
};

using pg_conn = std::unique_ptr<PGconn, void (*)(PGconn*)>;

pg_conn pg_connect(const std::string& url) {
  pg_conn c(PQconnectdb(url.c_str()), PQfinish);
  if (PQstatus(c.get()) != CONNECTION_OK)
    throw std::runtime_error(std::string("PostgreSQL: ") + PQerrorMessage(c.get()));
  return c;
}

/// Runs `sql`; returns the first row's fields (empty without rows). Throws on an error.
std::vector<std::string> pg_exec(PGconn* c, const std::string& sql) {
  std::unique_ptr<PGresult, void (*)(PGresult*)> r(PQexec(c, sql.c_str()), PQclear);
  auto st = PQresultStatus(r.get());
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
    throw std::runtime_error("PostgreSQL: " + std::string(PQerrorMessage(c)) + " in: " + sql);
  std::vector<std::string> row;
  if (PQntuples(r.get()) > 0)
    for (int i = 0; i < PQnfields(r.get()); ++i)
      row.emplace_back(PQgetvalue(r.get(), 0, i));
  return row;
}

/// Host, port, user and database of a libpq URL or key=value string, for the wire protocol.
pg_target pg_target_of(const std::string& url) {
  char* err = nullptr;
  std::unique_ptr<PQconninfoOption, void (*)(PQconninfoOption*)> opts(
      PQconninfoParse(url.c_str(), &err), PQconninfoFree);
  if (!opts) {
    std::string why = err ? err : "unparsable";
    PQfreemem(err);
    throw std::runtime_error("--postgres-url: " + why);
  }
  pg_target t;
  t.where.host = "127.0.0.1";
  t.where.port = 5432;
  for (auto* o = opts.get(); o->keyword; ++o) {
    if (!o->val || !*o->val)
      continue;
    std::string k = o->keyword, v = o->val;
    if (k == "host")
      t.where.host = v;
    else if (k == "port")
      t.where.port = static_cast<std::uint16_t>(std::stoi(v));
    else if (k == "user")
      t.user = v;
    else if (k == "dbname")
      t.database = v;
  }
  if (t.user.empty())
    t.user = std::getenv("USER") ? std::getenv("USER") : "postgres";
  if (t.database.empty())
    t.database = t.user;
  if (!t.where.host.empty() && t.where.host[0] == '/')
    throw std::runtime_error("--postgres-url: the postgres phase needs a TCP host, not a socket");
  return t;
}

std::string loader_sql(const cache_args& a) {
  return "SELECT body FROM " + a.schema + ".bench_items WHERE key = $1";
}

/// The scratch table: --zipf-keys rows `k<i>` → a jsonb of exactly --value-bytes as text, read
/// once whole so that both zipf and postgres find it in PostgreSQL's buffers. Returns facts.
json create_table(const cache_args& a, PGconn* c) {
  const std::string t = a.schema + ".bench_items";
  pg_exec(c, "set client_min_messages = warning");
  pg_exec(c, "create schema if not exists " + a.schema);
  pg_exec(c, "drop table if exists " + t);
  pg_exec(c, "create table " + t + " (key text primary key, body jsonb not null)");
  // jsonb prints {"id": <g>, "pad": "<x…>"}: 19 bytes besides the digits of g and the pad.
  pg_exec(c, "insert into " + t +
                 " select 'k' || g, jsonb_build_object('id', g, 'pad', repeat('x', "
                 "greatest(0, " +
                 std::to_string(a.value_bytes) +
                 " - 19 - length(g::text)))) "
                 "from generate_series(0, " +
                 std::to_string(a.zipf_keys - 1) + ") g");
  pg_exec(c, "analyze " + t);
  auto facts = pg_exec(c, "select count(*), min(length(body::text)), max(length(body::text)), "
                          "pg_total_relation_size('" +
                              t + "') from " + t);
  return {{"table", t},
          {"rows", std::stoull(facts.at(0))},
          {"value_bytes_min", std::stoull(facts.at(1))},
          {"value_bytes_max", std::stoull(facts.at(2))},
          {"relation_bytes", std::stoull(facts.at(3))},
          {"loader", loader_sql(a)}};
}

// --- CPU meters -------------------------------------------------------------------------------

double self_cpu_s() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

/// PostgreSQL's whole CPU: the postmaster, the children it reaped (cutime) and those alive
/// (backends, background processes). 0 when it does not run on this machine.
double postgres_cpu_s(long postmaster) {
  if (postmaster <= 0)
    return 0;
  double s = proc_cpu_s(postmaster, true);
  std::unique_ptr<DIR, int (*)(DIR*)> dir(opendir("/proc"), closedir);
  for (dirent* e; dir && (e = readdir(dir.get())) != nullptr;) {
    char* end = nullptr;
    long pid = std::strtol(e->d_name, &end, 10);
    if (pid > 0 && *end == '\0' && parent_pid(pid) == postmaster)
      s += proc_cpu_s(pid, false);
  }
  return s;
}

/// The postmaster of `backend` when that process runs here and is PostgreSQL's; else 0 (a
/// PostgreSQL elsewhere: its pid may name an unrelated local process).
long local_postmaster(long backend) {
  std::ifstream in("/proc/" + std::to_string(backend) + "/cmdline");
  std::string cmd;
  std::getline(in, cmd, '\0');
  if (cmd.rfind("postgres", 0) != 0)
    return 0;
  return std::max(0L, parent_pid(backend));
}

/// Busy and stolen CPU seconds of the whole machine (/proc/stat).
std::pair<double, double> machine_busy_s() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  double v[8] = {};
  in >> cpu;
  for (auto& x : v)
    in >> x;
  double tick = static_cast<double>(sysconf(_SC_CLK_TCK));
  // user nice system idle iowait irq softirq steal
  return {(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / tick, v[7] / tick};
}

struct snapshot {
  steady::time_point at;
  double sessiond = 0, redis = 0, postgres = 0, bench = 0, busy = 0, steal = 0;
};

class meter {
public:
  meter(const target& redis, long sessiond_pid, long postmaster)
      : redis_(redis), sessiond_(sessiond_pid), postmaster_(postmaster) {}
  snapshot take() {
    snapshot s;
    s.sessiond = sessiond_ > 0 ? proc_cpu_s(sessiond_, false) : 0;
    s.redis = redis_.cpu_s();
    s.postgres = postgres_cpu_s(postmaster_);
    s.bench = self_cpu_s();
    std::tie(s.busy, s.steal) = machine_busy_s();
    s.at = steady::now();
    return s;
  }
  bool has_sessiond() const { return sessiond_ > 0; }
  bool has_postgres() const { return postmaster_ > 0; }

private:
  redis_meter redis_;
  long sessiond_, postmaster_;
};

// --- the node ---------------------------------------------------------------------------------

std::string toml_string(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\')
      out += '\\';
    out += c;
  }
  return out + "\"";
}

std::string node_config(const cache_args& a) {
  std::ostringstream t;
  t << "# written by sessiond-bench cache\n"
    << "[cache.namespaces.hit_near]\nttl_s = 86400\njitter_ratio = 0.0\n"
    // A quarter above the keys: the near cache is 16 LRU stripes of capacity / 16 each, and a
    // stripe holding more than its share of the keys would evict (measured: sized to the keys
    // exactly, 97.6% of the reads were near hits).
    << "near_cache_entries = "
    << (a.near_entries > 0 ? static_cast<std::uint64_t>(a.near_entries)
                           : std::min<std::uint64_t>(a.keys + a.keys / 4 + 16, 10000000))
    << "\n"
    << "near_ttl_ms = " << a.near_ttl_ms << "\nearly_refresh_beta = 0.0\n\n"
    << "[cache.namespaces.hit_redis]\nttl_s = 86400\njitter_ratio = 0.0\n"
    << "near_cache_entries = 0\nearly_refresh_beta = 0.0\n";
  if (needs_table(a))
    t << "\n[cache.namespaces.zipf]\nttl_s = " << a.zipf_ttl_s << "\n"
      << "loader = " << toml_string(loader_sql(a)) << "\n"
      << "near_cache_entries = " << a.zipf_near_entries << "\n"
      << "near_ttl_ms = " << a.zipf_near_ttl_ms << "\n";
  return t.str();
}

/// The running node, for the signal handler: a bench stopped by SIGINT or SIGTERM (timeout(1), a
/// driver script) stops its node too instead of leaving it behind.
std::atomic<pid_t> child_pid{0};
char child_files[3][256]; ///< its TOML file, its log and their directory, removed by the handler

extern "C" void on_stop_signal(int sig) {
  if (pid_t p = child_pid.load(); p > 0) {
    kill(p, SIGTERM);
    unlink(child_files[0]);
    unlink(child_files[1]);
    rmdir(child_files[2]);
  }
  signal(sig, SIG_DFL);
  raise(sig);
}

std::string default_sessiond_path() {
  char buf[4096];
  auto n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0)
    return "sessiond";
  std::string self(buf, static_cast<std::size_t>(n));
  return self.substr(0, self.rfind('/')) + "/../app/sessiond";
}

/// A sessiond child: the TOML file and its log in a temp directory, the node's own SESSIOND_*
/// variables (the caller's are not passed on), HTTP on a port the node picks. Stopped with
/// SIGTERM (SIGKILL after 20 s) when destroyed.
class node {
public:
  explicit node(const cache_args& a) {
    char dir[] = "/tmp/sessiond-bench-cache.XXXXXX";
    if (!mkdtemp(dir))
      throw std::runtime_error(std::string("mkdtemp: ") + std::strerror(errno));
    dir_ = dir;
    config_text_ = node_config(a);
    std::ofstream(dir_ + "/sessiond.toml") << config_text_;
    try {
      spawn(a.sessiond.empty() ? default_sessiond_path() : a.sessiond, a);
      wait_listening();
      wait_ready();
    } catch (...) { // no destructor runs for a half-built node
      clean_up();
      throw;
    }
  }
  ~node() { clean_up(); }
  node(const node&) = delete;
  node& operator=(const node&) = delete;

  long pid() const { return pid_; }
  const target& http() const { return http_; }
  std::string url() const { return "http://" + http_.host + ":" + std::to_string(http_.port); }
  const std::string& config_text() const { return config_text_; }

  void stop() {
    if (pid_ <= 0)
      return;
    kill(pid_, SIGTERM);
    for (int i = 0; i < 200 && waitpid(pid_, nullptr, WNOHANG) == 0; ++i)
      std::this_thread::sleep_for(100ms);
    if (waitpid(pid_, nullptr, WNOHANG) == 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    pid_ = 0;
    child_pid = 0;
  }

  void clean_up() {
    stop();
    for (const char* f : {"/sessiond.toml", "/sessiond.log"})
      std::remove((dir_ + f).c_str());
    rmdir(dir_.c_str());
  }

  std::string log_tail() const {
    std::ifstream in(dir_ + "/sessiond.log");
    std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return all.size() > 2000 ? all.substr(all.size() - 2000) : all;
  }

private:
  void spawn(const std::string& path, const cache_args& a) {
    std::vector<std::string> env;
    for (char** e = environ; *e; ++e)
      if (std::strncmp(*e, "SESSIOND_", 9) != 0)
        env.emplace_back(*e);
    for (auto& [k, v] : std::vector<std::pair<std::string, std::string>>{
             {"REDIS_URL", a.redis_url},
             {"POSTGRES_URL", a.postgres_url},
             {"POSTGRES_SCHEMA", a.schema},
             {"POSTGRES_POOL_SIZE", std::to_string(a.pool_size)},
             {"REDIS_KEY_PREFIX", a.key_prefix},
             {"NODE_ID", "cache-bench"},
             {"HTTP_LISTEN", "127.0.0.1:0"},
             {"SYNC_INTERVAL_MS", "86400000"},
             {"RETENTION_ENABLED", "false"}})
      env.push_back("SESSIOND_" + k + "=" + v);
    std::vector<char*> envp, argv;
    for (auto& e : env)
      envp.push_back(e.data());
    envp.push_back(nullptr);
    std::string config = dir_ + "/sessiond.toml", log = dir_ + "/sessiond.log", flag = "--config";
    std::string exe = path;
    argv = {exe.data(), flag.data(), config.data(), nullptr};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    pid_t pid = 0;
    int rc = posix_spawn(&pid, exe.c_str(), &fa, nullptr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0)
      throw std::runtime_error("cannot start " + exe + ": " + std::strerror(rc));
    pid_ = pid;
    int i = 0;
    for (const auto& f : {config, log, dir_})
      std::snprintf(child_files[i++], sizeof child_files[0], "%s", f.c_str());
    child_pid = pid;
    signal(SIGINT, on_stop_signal);
    signal(SIGTERM, on_stop_signal);
  }

  void exited_check() {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = child_pid = 0;
      throw std::runtime_error("sessiond exited at start; its log ends with:\n" + log_tail());
    }
  }

  void wait_listening() {
    const std::string mark = "listening on http://127.0.0.1:";
    for (int i = 0; i < 600; ++i) {
      exited_check();
      auto log = log_tail();
      if (auto at = log.find(mark); at != std::string::npos) {
        http_.host = "127.0.0.1";
        http_.port = static_cast<std::uint16_t>(std::atoi(log.c_str() + at + mark.size()));
        return;
      }
      std::this_thread::sleep_for(100ms);
    }
    throw std::runtime_error("sessiond did not listen within 60 s; its log ends with:\n" +
                             log_tail());
  }

  /// GET /v1/cache answers and the cache is not degraded (its Redis and subscription are up).
  void wait_ready() {
    std::string last;
    for (int i = 0; i < 100; ++i) {
      exited_check();
      try {
        auto r = http_call(http_, "GET", "/v1/cache");
        last = std::to_string(r.status) + " " + r.body.substr(0, 300);
        if (r.status == 200 && !json::parse(r.body).value("degraded", true))
          return;
      } catch (const std::exception& e) {
        last = e.what();
      }
      std::this_thread::sleep_for(100ms);
    }
    throw std::runtime_error("the node's cache did not become ready within 10 s: " + last);
  }

  std::string dir_, config_text_;
  long pid_ = 0;
  target http_;
};

/// The named namespace's counters from GET /v1/cache.
json cache_counters(const target& http, const std::string& ns) {
  auto r = http_call(http, "GET", "/v1/cache");
  if (r.status != 200)
    throw std::runtime_error("GET /v1/cache answered " + std::to_string(r.status));
  auto all = json::parse(r.body); // kept: the loop below iterates one of its members
  for (const auto& s : all.at("namespaces"))
    if (s.value("name", "") == ns)
      return s;
  throw std::runtime_error("GET /v1/cache has no namespace " + ns);
}

json counters_delta(const json& from, const json& to) {
  json out;
  for (const char* k : {"hits", "near_hits", "misses", "loads", "load_errors",
                        "single_flight_waits", "early_refreshes", "stale_served", "skipped_writes"})
    out[k] = to.value(k, 0.0) - from.value(k, 0.0);
  double hits = out["hits"].get<double>(), misses = out["misses"].get<double>();
  out["hit_ratio"] = hits + misses > 0 ? hits / (hits + misses) : 0.0;
  out["near_share_of_hits"] = hits > 0 ? out["near_hits"].get<double>() / hits : 0.0;
  return out;
}

/// Samples a namespace's counters once a second on a thread of its own (the zipf phase's
/// series: how the hit ratio and the loads move as the cache fills).
class counter_sampler {
public:
  counter_sampler(const target& http, std::string ns) : http_(http), ns_(std::move(ns)) {
    start_ = steady::now();
    thread_ = std::thread([this] { loop(); });
  }
  ~counter_sampler() { stop(); }
  counter_sampler(const counter_sampler&) = delete;
  counter_sampler& operator=(const counter_sampler&) = delete;

  json stop() {
    {
      std::lock_guard<std::mutex> g{mtx_};
      stopping_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable())
      thread_.join();
    return series_;
  }

private:
  void loop() {
    json prev;
    std::unique_lock<std::mutex> lock{mtx_};
    for (int second = 0; !stopping_; ++second) {
      if (second > 0 &&
          cv_.wait_until(lock, start_ + std::chrono::seconds(second), [this] { return stopping_; }))
        break;
      lock.unlock();
      json now;
      try {
        now = cache_counters(http_, ns_);
      } catch (const std::exception&) {
        lock.lock();
        continue; // a missed sample leaves a gap; the totals come from elsewhere
      }
      if (!prev.is_null()) {
        auto d = counters_delta(prev, now);
        series_.push_back({{"second", second},
                           {"hit_ratio", d["hit_ratio"]},
                           {"loads", d["loads"]},
                           {"hits", d["hits"]},
                           {"misses", d["misses"]}});
      }
      prev = now;
      lock.lock();
    }
  }

  target http_;
  std::string ns_;
  steady::time_point start_;
  std::mutex mtx_;
  std::condition_variable cv_;
  bool stopping_ = false;
  json series_ = json::array();
  std::thread thread_;
};

// --- phases -----------------------------------------------------------------------------------

struct outcome {
  std::string id, title;
  phase_result r;
  snapshot from, to;
  json extra = json::object(); ///< cache counters, distinct keys, series
};

phase_config load_config(const cache_args& a, const std::string& name, const protocol& proto,
                         const target& where, std::uint64_t space) {
  phase_config c;
  c.name = name;
  c.url = name;
  c.proto = &proto;
  c.where = where;
  c.connections = a.connections;
  c.threads = a.threads;
  c.timeout = a.timeout;
  c.mix.weight[0] = 100; // GET only (the prefill PUTs or SETs)
  c.mix.weight[1] = 0;
  c.sessions = space;
  c.prefill = false;
  if (!a.json_out)
    c.progress = [](const std::string& line) {
      std::cerr << "sessiond-bench cache: " << line << "\n";
    };
  return c;
}

/// The engine's run, measured: `warm` (when given) first with the prefill and --warmup, not
/// recorded; then the window with `measured` from a CPU snapshot to another.
outcome measure(const cache_args& a, meter& m, const std::string& id, const std::string& title,
                const protocol* warm, const protocol& measured, const target& where,
                std::uint64_t space, std::chrono::nanoseconds duration, bool prefill) {
  if (warm != nullptr) {
    auto c = load_config(a, id + " (warmup)", *warm, where, space);
    c.prefill = prefill;
    c.duration = a.warmup;
    auto w = run_phase(c);
    if (prefill && w.prefill.ok != w.prefill.requests)
      throw std::runtime_error(id + ": prefill: " + std::to_string(w.prefill.ok) + " of " +
                               std::to_string(w.prefill.requests) + " writes ok");
  }
  auto c = load_config(a, id, measured, where, space);
  c.duration = duration;
  outcome o;
  o.id = id;
  o.title = title;
  o.extra["connections"] = a.connections;
  o.from = m.take();
  o.r = run_phase(c);
  std::this_thread::sleep_for(100ms); // closed backends are reaped, their CPU lands in cutime
  o.to = m.take();
  return o;
}

json latency_json(const histogram& h) {
  auto ms = [](std::uint64_t ns) { return static_cast<double>(ns) / 1e6; };
  return {{"p50", ms(h.percentile(50))}, {"p90", ms(h.percentile(90))},
          {"p99", ms(h.percentile(99))}, {"p99_9", ms(h.percentile(99.9))},
          {"max", ms(h.max())},          {"mean", h.mean() / 1e6}};
}

json outcome_json(const outcome& o, const meter& m) {
  const auto& s = o.r.measured;
  double n = static_cast<double>(std::max<std::uint64_t>(s.requests, 1));
  auto per = [&](double from, double to, bool has) {
    return has ? json(1e6 * (to - from) / n) : json(nullptr);
  };
  double wall = std::chrono::duration<double>(o.to.at - o.from.at).count();
  auto cores = [&](double from, double to, bool has) {
    return has ? json((to - from) / wall) : json(nullptr);
  };
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  auto pct = [&](double cpu_s) { return 100 * cpu_s / (wall * static_cast<double>(cpus)); };
  // What other processes spent: the machine's busy time less steal and the four measured here.
  double ours = (o.to.sessiond - o.from.sessiond) + (o.to.redis - o.from.redis) +
                (o.to.postgres - o.from.postgres) + (o.to.bench - o.from.bench);
  json out{{"title", o.title},
           {"requests", s.requests},
           {"ok", s.ok},
           {"duration_s", o.r.measured_s},
           {"throughput_rps", static_cast<double>(s.requests) / o.r.measured_s},
           {"latency_ms", latency_json(s.latency)},
           {"status", o.r.status},
           {"errors",
            {{"connect", s.errors.connect},
             {"io", s.errors.io},
             {"timeout", s.errors.timeout},
             {"protocol", s.errors.protocol}}},
           {"cpu_us_per_request",
            {{"sessiond", per(o.from.sessiond, o.to.sessiond, m.has_sessiond())},
             {"redis", per(o.from.redis, o.to.redis, true)},
             {"postgres", per(o.from.postgres, o.to.postgres, m.has_postgres())},
             {"bench", per(o.from.bench, o.to.bench, true)}}},
           {"cpu_cores",
            {{"sessiond", cores(o.from.sessiond, o.to.sessiond, m.has_sessiond())},
             {"redis", cores(o.from.redis, o.to.redis, true)},
             {"postgres", cores(o.from.postgres, o.to.postgres, m.has_postgres())},
             {"bench", cores(o.from.bench, o.to.bench, true)}}},
           {"machine",
            {{"wall_s", wall},
             {"cpus", cpus},
             {"busy_pct", pct(o.to.busy - o.from.busy)},
             {"steal_pct", pct(o.to.steal - o.from.steal)},
             {"others_pct", pct(o.to.busy - o.from.busy - (o.to.steal - o.from.steal) - ours)}}}};
  for (auto& [k, v] : o.extra.items())
    out[k] = v;
  return out;
}

/// The whole run: the node, the table, the phases in the order asked.
class cache_bench {
public:
  explicit cache_bench(const cache_args& a)
      : a_(a), uniform_(a.keys, 0), zipf_(a.zipf_keys, a.zipf_s) {}

  const json& facts() const { return facts_; }
  const json& phases() const { return phases_; }
  void stop_node() {
    if (node_)
      node_->stop();
  }

  void run() {
    long postmaster = 0;
    if (!a_.postgres_url.empty()) {
      auto pg = pg_connect(a_.postgres_url);
      postmaster = local_postmaster(PQbackendPID(pg.get()));
      if (needs_table(a_)) {
        say("creating " + a_.schema + ".bench_items with " + std::to_string(a_.zipf_keys) +
            " rows");
        facts_["table"] = create_table(a_, pg.get());
        pg_exec(pg.get(), "select sum(length(body::text)) from " + a_.schema + ".bench_items");
      }
    }
    if (needs_node(a_)) {
      say("starting sessiond");
      node_ = std::make_unique<node>(a_);
      facts_["node"] = {
          {"pid", node_->pid()}, {"url", node_->url()}, {"config", node_->config_text()}};
    }
    meter m(a_.redis, node_ ? node_->pid() : 0, postmaster);
    for (const auto& p : a_.phases) {
      auto o = phase(p, m);
      phases_[o.id] = outcome_json(o, m);
      if (!a_.json_out)
        print_one(phases_[o.id]);
    }
  }

private:
  void say(const std::string& line) const {
    if (!a_.json_out)
      std::cerr << "sessiond-bench cache: " << line << "\n";
  }

  outcome phase(const std::string& p, meter& m) {
    if (p == "near" || p == "no-near")
      return sessiond_hits(p, m);
    if (p == "redis") {
      raw_redis warm(a_.redis, a_.key_prefix, uniform_, 1, a_.value_bytes);
      raw_redis measured(a_.redis, a_.key_prefix, uniform_, 0, a_.value_bytes);
      return measure(a_, m, p, "redis GET (raw)", &warm, measured, a_.redis, uniform_.space(),
                     a_.duration, true);
    }
    if (p == "zipf")
      return sessiond_zipf(m);
    return postgres_raw(m);
  }

  outcome sessiond_hits(const std::string& p, meter& m) {
    std::string ns = p == "near" ? "hit_near" : "hit_redis";
    cache_http warm(node_->http(), ns, uniform_, 1, a_.value_bytes);
    cache_http measured(node_->http(), ns, uniform_, 0, a_.value_bytes);
    auto o = measure_with_counters(m, p, ns, &warm, measured, uniform_.space(), a_.duration, true);
    o.title = p == "near" ? "sessiond GET, near cache on" : "sessiond GET, near cache off";
    return o;
  }

  outcome measure_with_counters(meter& m, const std::string& id, const std::string& ns,
                                const protocol* warm, const protocol& measured, std::uint64_t space,
                                std::chrono::nanoseconds duration, bool prefill) {
    if (warm != nullptr) { // the warmup alone, so that the counters below are the window's
      auto c = load_config(a_, id + " (warmup)", *warm, node_->http(), space);
      c.prefill = prefill;
      c.duration = a_.warmup;
      auto w = run_phase(c);
      if (prefill && w.prefill.ok != w.prefill.requests)
        throw std::runtime_error(id + ": prefill: " + std::to_string(w.prefill.ok) + " of " +
                                 std::to_string(w.prefill.requests) + " writes ok");
    }
    auto c0 = cache_counters(node_->http(), ns);
    auto o = measure(a_, m, id, "", nullptr, measured, node_->http(), space, duration, false);
    o.extra["cache"] = counters_delta(c0, cache_counters(node_->http(), ns));
    return o;
  }

  outcome sessiond_zipf(meter& m) {
    auto r = http_call(node_->http(), "POST", "/v1/cache/zipf/invalidate", R"({"all":true})");
    if (r.status != 200)
      throw std::runtime_error("zipf: invalidate answered " + std::to_string(r.status));
    cache_http measured(node_->http(), "zipf", zipf_, 0, a_.value_bytes);
    zipf_.forget_seen();
    auto sampler = std::make_unique<counter_sampler>(node_->http(), "zipf");
    auto o = measure_with_counters(m, "zipf", "zipf", nullptr, measured, zipf_.space(),
                                   a_.zipf_duration, false);
    o.title = "sessiond GET, Zipf(" + fmt(a_.zipf_s) + ") from a cold cache";
    auto series = sampler->stop();
    // Copied out: o.extra is an ordered map on a vector, and the lines below insert into it.
    auto cache = o.extra["cache"];
    cache["loads_per_s"] = cache["loads"].get<double>() / o.r.measured_s;
    double asked = cache["hits"].get<double>() + cache["misses"].get<double>();
    auto distinct = zipf_.distinct_seen();
    o.extra["cache"] = cache;
    o.extra["distinct_keys"] = distinct;
    // A cache of unbounded size misses each key once (compulsory misses): the best ratio here.
    o.extra["best_hit_ratio"] = asked > 0 ? 1.0 - static_cast<double>(distinct) / asked : 0.0;
    o.extra["invalidated_before"] = json::parse(r.body).value("invalidated", 0);
    o.extra["last_5s"] = tail_of(series, 5);
    o.extra["series"] = series;
    return o;
  }

  /// Hit ratio and loads/s over the last `n` one-second samples of the series.
  static json tail_of(const json& series, std::size_t n) {
    double hits = 0, misses = 0, loads = 0;
    std::size_t from = series.size() > n ? series.size() - n : 0, used = series.size() - from;
    for (std::size_t i = from; i < series.size(); ++i) {
      hits += series[i]["hits"].get<double>();
      misses += series[i]["misses"].get<double>();
      loads += series[i]["loads"].get<double>();
    }
    if (used == 0)
      return nullptr;
    return {{"seconds", used},
            {"hit_ratio", hits + misses > 0 ? hits / (hits + misses) : 0.0},
            {"loads_per_s", loads / static_cast<double>(used)}};
  }

  outcome postgres_raw(meter& m) {
    auto t = pg_target_of(a_.postgres_url);
    pg_wire measured(t, loader_sql(a_), zipf_, 0);
    zipf_.forget_seen();
    cache_args pg = a_;
    pg.connections = a_.pg_connections;
    auto o = measure(pg, m, "postgres", "postgres SELECT (raw), the same Zipf key sequence",
                     nullptr, measured, t.where, zipf_.space(), a_.zipf_duration, false);
    o.extra["distinct_keys"] = zipf_.distinct_seen();
    return o;
  }

  static std::string fmt(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", v);
    return buf;
  }

  void print_one(const json& p) const {
    auto& l = p["latency_ms"];
    auto& c = p["cpu_us_per_request"];
    auto cpu = [&](const char* k) {
      return c[k].is_null() ? std::string("-") : fmt(std::round(c[k].get<double>() * 100) / 100);
    };
    std::printf("%-52s %9.0f req/s  p50 %.3f  p99 %.3f  max %.1f ms\n",
                p["title"].get<std::string>().c_str(), p["throughput_rps"].get<double>(),
                l["p50"].get<double>(), l["p99"].get<double>(), l["max"].get<double>());
    auto& k = p["cpu_cores"];
    auto core = [&](const char* n) {
      return k[n].is_null() ? std::string("-") : fmt(std::round(k[n].get<double>() * 100) / 100);
    };
    const auto& mach = p["machine"];
    std::printf(
        "    CPU us/request: sessiond %s  redis %s  postgres %s  bench %s  (cores: %s %s %s "
        "%s);  machine %.0f%% busy, steal %.0f%%, others %.0f%%\n",
        cpu("sessiond").c_str(), cpu("redis").c_str(), cpu("postgres").c_str(),
        cpu("bench").c_str(), core("sessiond").c_str(), core("redis").c_str(),
        core("postgres").c_str(), core("bench").c_str(), mach["busy_pct"].get<double>(),
        mach["steal_pct"].get<double>(), mach["others_pct"].get<double>());
    if (p.contains("cache")) {
      auto& k = p["cache"];
      std::printf("    cache: hits %.0f (near %.0f), misses %.0f, hit ratio %.4f, loads %.0f",
                  k["hits"].get<double>(), k["near_hits"].get<double>(), k["misses"].get<double>(),
                  k["hit_ratio"].get<double>(), k["loads"].get<double>());
      if (k.contains("loads_per_s"))
        std::printf(" (%.0f/s), single-flight waits %.0f", k["loads_per_s"].get<double>(),
                    k["single_flight_waits"].get<double>());
      std::printf("\n");
    }
    if (p.contains("distinct_keys"))
      std::printf("    distinct keys requested: %llu\n",
                  static_cast<unsigned long long>(p["distinct_keys"].get<std::uint64_t>()));
    if (p.contains("best_hit_ratio"))
      std::printf("    best hit ratio (each key missed once): %.4f\n",
                  p["best_hit_ratio"].get<double>());
    if (p.contains("last_5s") && !p["last_5s"].is_null())
      std::printf("    last %d s: hit ratio %.4f, loads %.0f/s\n",
                  p["last_5s"]["seconds"].get<int>(), p["last_5s"]["hit_ratio"].get<double>(),
                  p["last_5s"]["loads_per_s"].get<double>());
    if (p.contains("series")) {
      std::printf("    by second (hit ratio, loads):");
      for (auto& s : p["series"])
        std::printf(" %.3f/%.0f", s["hit_ratio"].get<double>(), s["loads"].get<double>());
      std::printf("\n");
    }
    std::uint64_t errors = 0;
    for (auto& [k, v] : p["errors"].items())
      errors += v.get<std::uint64_t>();
    if (p["ok"] != p["requests"] || errors > 0)
      std::printf("    status %s, errors %s\n", p["status"].dump().c_str(),
                  p["errors"].dump().c_str());
    std::fflush(stdout);
  }

  const cache_args& a_;
  key_source uniform_, zipf_;
  std::unique_ptr<node> node_;
  json facts_ = json::object(), phases_ = json::object();
};

std::string masked_pg(const std::string& url) {
  auto scheme = url.find("://"), at = url.find('@');
  if (scheme == std::string::npos || at == std::string::npos)
    return url;
  auto colon = url.find(':', scheme + 3);
  return colon != std::string::npos && colon < at
             ? url.substr(0, colon + 1) + "***" + url.substr(at)
             : url;
}

json parameters_json(const cache_args& a) {
  auto secs = [](std::chrono::nanoseconds d) { return std::chrono::duration<double>(d).count(); };
  return {{"redis_url", shown_url(a.redis)},
          {"postgres_url", masked_pg(a.postgres_url)},
          {"phases", a.phases},
          {"connections", a.connections},
          {"postgres_connections", a.pg_connections},
          {"threads", a.threads},
          {"duration_s", secs(a.duration)},
          {"warmup_s", secs(a.warmup)},
          {"keys", a.keys},
          {"value_bytes", a.value_bytes},
          {"near_entries", a.near_entries},
          {"near_ttl_ms", a.near_ttl_ms},
          {"zipf_duration_s", secs(a.zipf_duration)},
          {"zipf_keys", a.zipf_keys},
          {"zipf_s", a.zipf_s},
          {"zipf_ttl_s", a.zipf_ttl_s},
          {"zipf_near_entries", a.zipf_near_entries},
          {"zipf_near_ttl_ms", a.zipf_near_ttl_ms},
          {"pool_size", a.pool_size},
          {"key_prefix", a.key_prefix},
          {"schema", a.schema}};
}

/// Ratios that the issue asks for, when both sides ran.
json comparisons(const json& phases) {
  json out = json::object();
  auto rps = [&](const char* id) { return phases[id]["throughput_rps"].get<double>(); };
  if (phases.contains("redis")) {
    for (const char* id : {"near", "no-near"})
      if (phases.contains(id))
        out[std::string(id) + "_over_redis_throughput"] = rps(id) / rps("redis");
  }
  if (phases.contains("zipf") && phases.contains("postgres")) {
    double loads = phases["zipf"]["cache"]["loads_per_s"].get<double>();
    out["postgres_queries_per_s_with_cache"] = loads;
    out["postgres_queries_per_s_without_cache"] = rps("postgres");
    out["zipf_sessiond_over_postgres_throughput"] = rps("zipf") / rps("postgres");
    out["postgres_queries_saved_ratio"] = loads > 0 ? rps("postgres") / loads : 0.0;
  }
  return out;
}

} // namespace

int run_cache_bench(const std::vector<std::string>& args) {
  cache_args a;
  try {
    a = parse(args);
  } catch (const std::exception& e) {
    std::cerr << "sessiond-bench cache: " << e.what() << "\n";
    return 2;
  }
  std::string load;
  std::getline(std::ifstream("/proc/loadavg"), load);
  if (!a.json_out)
    std::printf("sessiond-bench cache: %zu connections, %zu bench thread(s), closed loop; hit path "
                "%llu keys of %zu bytes, %g s after %g s warmup; Zipf(%g) over %llu rows, %g s; "
                "load %s\n",
                a.connections, a.threads, static_cast<unsigned long long>(a.keys), a.value_bytes,
                std::chrono::duration<double>(a.duration).count(),
                std::chrono::duration<double>(a.warmup).count(), a.zipf_s,
                static_cast<unsigned long long>(a.zipf_keys),
                std::chrono::duration<double>(a.zipf_duration).count(), load.c_str());
  json out{{"parameters", parameters_json(a)}, {"load_before", load}};
  int rc = 0;
  cache_bench b(a);
  try {
    b.run();
  } catch (const std::exception& e) {
    std::cerr << "sessiond-bench cache: " << e.what() << "\n";
    rc = 1;
  }
  b.stop_node();
  out["facts"] = b.facts();
  out["phases"] = b.phases(); // those done, when one failed
  out["comparisons"] = comparisons(b.phases());
  if (!a.json_out)
    std::cout << "comparisons " << out["comparisons"].dump(1) << "\n";
  if (a.json_out)
    std::cout << out.dump(2) << std::endl;
  return rc;
}

} // namespace sessiond::bench
