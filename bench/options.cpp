// sessiond-bench command line parsing: every flag, its checks and the --help text.
#include "bench/options.hpp"

#include <charconv>
#include <cmath>
#include <functional>
#include <map>

namespace sessiond::bench {

namespace {

[[noreturn]] void bad(std::string_view flag, std::string_view value, std::string_view why) {
  throw usage_error(std::string(flag) + " '" + std::string(value) + "': " + std::string(why));
}

bool parse_bool(std::string_view flag, std::string_view text) {
  if (text == "on" || text == "true" || text == "1" || text == "yes")
    return true;
  if (text == "off" || text == "false" || text == "0" || text == "no")
    return false;
  bad(flag, text, "expected on or off");
}

std::uint16_t parse_port(std::string_view flag, std::string_view url, std::string_view text) {
  std::uint64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || v == 0 || v > 65535)
    bad(flag, url, "bad port '" + std::string(text) + "'");
  return static_cast<std::uint16_t>(v);
}

void parse_userinfo(std::string_view info, target& t) {
  auto colon = info.find(':');
  if (colon == std::string_view::npos) {
    t.password = std::string(info); // redis://secret@host is a bare password
    return;
  }
  t.user = std::string(info.substr(0, colon));
  t.password = std::string(info.substr(colon + 1));
}

} // namespace

std::uint64_t parse_whole(std::string_view flag, std::string_view text, std::uint64_t min,
                          std::uint64_t max) {
  std::uint64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty())
    bad(flag, text, "not a whole number");
  if (v < min || v > max)
    bad(flag, text, "must be in [" + std::to_string(min) + ", " + std::to_string(max) + "]");
  return v;
}

double parse_number(std::string_view flag, std::string_view text) {
  std::string s(text);
  char* end = nullptr;
  double v = s.empty() ? NAN : std::strtod(s.c_str(), &end);
  if (s.empty() || end != s.c_str() + s.size() || !std::isfinite(v))
    bad(flag, text, "not a number");
  return v;
}

std::string joined(const std::vector<std::string>& urls) {
  std::string out;
  for (auto& u : urls)
    out += (out.empty() ? "" : ",") + u;
  return out;
}

std::string shown_url(const target& t) {
  std::string auth = t.password.empty() ? "" : t.user + ":***@";
  return "redis://" + auth + t.host + ":" + std::to_string(t.port) + "/" + std::to_string(t.db);
}

const char* to_string(op o) {
  static const char* names[op_count] = {"get", "put", "patch", "delete"};
  return names[static_cast<std::size_t>(o)];
}

std::uint32_t mix::total() const {
  std::uint32_t sum = 0;
  for (auto w : weight)
    sum += w;
  return sum;
}

std::string to_string(const struct mix& m) {
  std::string out;
  for (std::size_t i = 0; i < op_count; ++i) {
    if (m.weight[i] == 0)
      continue;
    out += (out.empty() ? "" : ",") + std::string(to_string(static_cast<op>(i))) + "=" +
           std::to_string(m.weight[i]);
  }
  return out;
}

std::chrono::nanoseconds parse_duration(std::string_view flag, std::string_view text) {
  auto unit_at = text.find_first_not_of("0123456789.");
  if (unit_at == 0 || unit_at == std::string_view::npos)
    bad(flag, text, "expected a number with a unit: ms, s, m or h (e.g. 500ms, 30s, 5m)");
  static const std::map<std::string_view, double> scale = {
      {"ms", 1e6}, {"s", 1e9}, {"m", 60e9}, {"h", 3600e9}};
  auto unit = scale.find(text.substr(unit_at));
  if (unit == scale.end())
    bad(flag, text, "unknown unit; use ms, s, m or h");
  double ns = parse_number(flag, text.substr(0, unit_at)) * unit->second;
  if (ns > 1e9 * 86400 * 7)
    bad(flag, text, "longer than a week");
  return std::chrono::nanoseconds(static_cast<std::int64_t>(ns));
}

struct mix parse_mix(std::string_view text) {
  static const std::map<std::string_view, op> names = {
      {"get", op::get}, {"put", op::put}, {"patch", op::patch}, {"delete", op::del}};
  struct mix m;
  for (auto& w : m.weight)
    w = 0;
  bool seen[op_count] = {};
  std::string_view rest = text;
  while (!rest.empty()) {
    auto comma = rest.find(',');
    auto item = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    auto eq = item.find('=');
    auto name = names.find(item.substr(0, eq));
    if (eq == std::string_view::npos || name == names.end())
      bad("--mix", text, "expected items like get=80 (get, put, patch, delete)");
    auto i = static_cast<std::size_t>(name->second);
    if (seen[i])
      bad("--mix", text, std::string(name->first) + " given twice");
    seen[i] = true;
    auto weight = item.substr(eq + 1);
    auto r = std::from_chars(weight.data(), weight.data() + weight.size(), m.weight[i]);
    if (r.ec != std::errc() || r.ptr != weight.data() + weight.size() || weight.empty() ||
        m.weight[i] > 1000000)
      bad("--mix", text, "weight '" + std::string(weight) + "' is not a whole number <= 1000000");
  }
  if (m.total() == 0)
    bad("--mix", text, "the weights add up to 0");
  return m;
}

target parse_url(std::string_view flag, std::string_view url, std::string_view scheme) {
  std::string prefix = std::string(scheme) + "://";
  if (url.substr(0, prefix.size()) != prefix)
    bad(flag, url, "expected a " + prefix + " URL");
  target t;
  t.port = scheme == "redis" ? 6379 : 80;
  auto rest = url.substr(prefix.size());
  auto slash = rest.find('/');
  auto authority = rest.substr(0, slash);
  auto path = slash == std::string_view::npos ? std::string_view() : rest.substr(slash + 1);
  auto at = authority.rfind('@');
  if (at != std::string_view::npos) {
    if (scheme != "redis")
      bad(flag, url, "credentials are not supported here");
    parse_userinfo(authority.substr(0, at), t);
    authority = authority.substr(at + 1);
  }
  auto colon = authority.rfind(':');
  t.host = std::string(authority.substr(0, colon));
  if (colon != std::string_view::npos)
    t.port = parse_port(flag, url, authority.substr(colon + 1));
  if (t.host.empty())
    bad(flag, url, "no host");
  int db = 0;
  auto r = std::from_chars(path.data(), path.data() + path.size(), db);
  if (scheme == "redis" && !path.empty() &&
      (r.ec != std::errc() || r.ptr != path.data() + path.size() || db < 0))
    bad(flag, url, "the database '" + std::string(path) + "' is not a whole number");
  if (scheme == "redis")
    t.db = db;
  else if (!path.empty())
    bad(flag, url, "a path is not supported; give scheme, host and port only");
  return t;
}

namespace {

using setter = std::function<void(options&, std::string_view flag, std::string_view value)>;

struct flag_spec {
  bool takes_value;
  setter set;
};

std::uint64_t count_flag(std::string_view f, std::string_view v, std::uint64_t max) {
  return parse_whole(f, v, 1, max);
}

long pid_flag(std::string_view f, std::string_view v) {
  return static_cast<long>(parse_whole(f, v, 1, 1 << 30));
}

/// --url: one URL or a comma-separated list, added to those of earlier --url flags (the first
/// --url drops the default). Each is checked later, in check(), naming the bad one.
void add_urls(options& o, std::string_view f, std::string_view v) {
  if (!o.url_given)
    o.urls.clear();
  o.url_given = true;
  std::string_view rest = v;
  for (;;) {
    auto comma = rest.find(',');
    auto item = rest.substr(0, comma);
    if (item.empty())
      bad(f, v, "an empty URL in the list");
    o.urls.emplace_back(item);
    if (comma == std::string_view::npos)
      return;
    rest = rest.substr(comma + 1);
  }
}

const std::map<std::string_view, flag_spec>& flag_table() {
  static const std::map<std::string_view, flag_spec> table = {
      {"--url", {true, [](options& o, auto f, auto v) { add_urls(o, f, v); }}},
      {"--connections",
       {true, [](options& o, auto f, auto v) { o.connections = count_flag(f, v, 100000); }}},
      {"--threads", {true, [](options& o, auto f, auto v) { o.threads = count_flag(f, v, 256); }}},
      {"--duration", {true, [](options& o, auto f, auto v) { o.duration = parse_duration(f, v); }}},
      {"--warmup", {true, [](options& o, auto f, auto v) { o.warmup = parse_duration(f, v); }}},
      {"--timeout", {true, [](options& o, auto f, auto v) { o.timeout = parse_duration(f, v); }}},
      {"--rate",
       {true,
        [](options& o, auto f, auto v) {
          o.rate = parse_number(f, v);
          if (o.rate < 0 || o.rate > 1e8)
            bad(f, v, "must be in [0, 1e8] (0 or no --rate: closed loop)");
        }}},
      {"--mix", {true, [](options& o, auto, auto v) { o.mix = parse_mix(v); }}},
      {"--sessions",
       {true, [](options& o, auto f, auto v) { o.sessions = count_flag(f, v, 1000000000); }}},
      {"--value-bytes",
       {true, [](options& o, auto f, auto v) { o.value_bytes = parse_whole(f, v, 8, 64 << 20); }}},
      {"--prefill", {false, [](options& o, auto f, auto v) { o.prefill = parse_bool(f, v); }}},
      {"--no-prefill", {false, [](options& o, auto, auto) { o.prefill = false; }}},
      {"--json", {false, [](options& o, auto f, auto v) { o.json = parse_bool(f, v); }}},
      {"--baseline",
       {true,
        [](options& o, auto f, auto v) {
          if (v != "redis")
            bad(f, v, "the only baseline is redis");
          o.baseline_redis = true;
        }}},
      {"--only",
       {true,
        [](options& o, auto f, auto v) {
          if (v != "redis" && v != "sessiond")
            bad(f, v, "expected redis or sessiond");
          o.only_redis = v == "redis";
        }}},
      {"--redis-url", {true, [](options& o, auto, auto v) { o.redis_url = std::string(v); }}},
      {"--rss-pid", {true, [](options& o, auto f, auto v) { o.rss_pid = pid_flag(f, v); }}},
      {"--acked-file",
       {true,
        [](options& o, auto f, auto v) {
          if (v.empty())
            bad(f, v, "needs a file name");
          o.acked_file = std::string(v);
        }}},
  };
  return table;
}

void check(options& o) {
  o.http.clear();
  for (auto& u : o.urls)
    o.http.push_back(parse_url("--url", u, "http"));
  o.redis = parse_url("--redis-url", o.redis_url, "redis");
  if (o.threads > o.connections)
    throw usage_error("--threads " + std::to_string(o.threads) + " is more than --connections " +
                      std::to_string(o.connections));
  if (o.connections < o.urls.size())
    throw usage_error("--connections " + std::to_string(o.connections) + " is fewer than the " +
                      std::to_string(o.urls.size()) + " --url targets (each needs one)");
  if (o.duration.count() <= 0)
    throw usage_error("--duration must be longer than 0");
  if (o.timeout.count() <= 0)
    throw usage_error("--timeout must be longer than 0");
}

} // namespace

options parse_options(const std::vector<std::string>& args, bool& help) {
  options o;
  help = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string_view arg = args[i];
    if (arg == "--help" || arg == "-h") {
      help = true;
      return o;
    }
    auto eq = arg.find('=');
    auto name = arg.substr(0, eq);
    auto spec = flag_table().find(name);
    if (spec == flag_table().end())
      throw usage_error("unknown flag '" + std::string(arg) + "' (see --help)");
    std::string_view value = "on";
    if (eq != std::string_view::npos)
      value = arg.substr(eq + 1);
    else if (spec->second.takes_value && i + 1 < args.size())
      value = args[++i];
    else if (spec->second.takes_value)
      throw usage_error(std::string(name) + " needs a value (see --help)");
    spec->second.set(o, name, value);
  }
  check(o);
  return o;
}

const char* help_text() {
  return R"(sessiond-bench: load generator for sessiond's session API, with a Redis baseline.

usage: sessiond-bench [flags]     (--flag value and --flag=value both work)

target and load
  --url URL[,URL...]   sessiond node(s) to load (default http://127.0.0.1:8080). Give it
                       more than once and/or as a comma-separated list to load several
                       nodes at once: connection i goes to URL i % n (round-robin), the
                       mix and totals are as with one URL, and the report adds the
                       requests each URL answered. --connections must be at least n
  --connections N      keep-alive HTTP/1.1 connections, one request in flight each (default 64)
  --threads T          I/O threads; connections and rate are split across them (default 1)
  --duration D         measured time, e.g. 500ms, 30s, 5m (default 30s)
  --warmup D           load before measuring starts, not recorded (default 2s; 0s for none)
  --rate R             total requests/s, open loop: request i is due at t0 + i/R and its
                       latency counts from that time, so queueing is measured. Without
                       --rate (or with 0): closed loop, each connection as fast as it can
  --timeout D          a request without a full response by then is an error (default 5s)

workload
  --mix LIST           operation weights, e.g. get=80,put=15,patch=5 (also delete=N)
                       (default get=80,put=20)
  --sessions N         distinct session ids bench-0 .. bench-<N-1> (default 10000)
  --value-bytes B      size of the serialized session data {"v":"xx…"}, at least 8
                       (default 512); the Redis baseline stores values of B bytes
  --prefill, --no-prefill
                       PUT (Redis: SET) every session once before measuring so reads
                       hit (default on; --prefill=off also works)

baseline and output
  --baseline redis     after the sessiond phase, run the same load against Redis directly
                       (GET, SET for put and patch, DEL; keys bench:<n>) and print the
                       sessiond/redis ratios for throughput and p99
  --only redis         run only the Redis phase (calibration); --only sessiond is the default
  --redis-url URL      redis://[[user]:password@]host[:port][/db]
                       (default redis://127.0.0.1:6379/0)
  --rss-pid PID        sample VmRSS of PID every second while measuring; report first,
                       last and max
  --acked-file PATH    write every PUT/PATCH/DELETE of the sessiond phase (prefill
                       included) to PATH when it ends, one line each:
                       <id> <op> <version from ETag> <status|io|timeout|protocol> <unix ms>
  --json               print one JSON object (parameters and results) instead of text
  --help               this text

subcommands (each has its own --help)
  sessiond-bench sync ...       write-behind throughput and lag (sync_engine alone)
  sessiond-bench upsert ...     the write-behind's PostgreSQL statement alone (server CPU/row)
  sessiond-bench retention ...  deletion rate of the retention run
  sessiond-bench floor ...      a server doing only the HTTP and Redis work a session node
                                cannot avoid, to load in turn with sessiond

exit status: 0 done, 1 could not connect or run, 2 bad flags.
)";
}

} // namespace sessiond::bench
