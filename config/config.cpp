// Loads, validates and prints the sessiond configuration. One table (key_table) declares every
// key once: name, field, bounds, help. The TOML reader, the environment overrides, validate,
// to_toml, keys() and operator== all walk it, so a new key is one entry here plus its field.
// The job queue's keys and its per-queue tables live in queues.cpp, the cache's keys and its
// namespace tables in cache.cpp. This file is past ~800 lines and stays one: the table and its
// walkers change together when a kind of key (integer, real…) is added, and split they would
// each hold a part of every kind.
#include "config/config.hpp"

#include "config/key_table.hpp"

#include <toml++/toml.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string_view>
#include <variant>

namespace sessiond::config {
namespace detail {

template <class... Fs>
struct overloaded : Fs... {
  using Fs::operator()...;
};
template <class... Fs>
overloaded(Fs...) -> overloaded<Fs...>;

key_spec integer(std::string_view name, int_field f, std::int64_t min, std::int64_t max,
                 std::string_view help) {
  return {name, f, min, max, nullptr, {}, false, help};
}

key_spec boolean(std::string_view name, bool_field f, std::string_view help) {
  return {name, f, 0, 0, nullptr, {}, false, help};
}

key_spec real(std::string_view name, real_field f, std::int64_t min, std::int64_t max,
              std::string_view help) {
  return {name, f, min, max, nullptr, {}, false, help};
}

key_spec choice(std::string_view name, text_field f, std::string_view choices,
                std::string_view help) {
  return {name, f, 0, 0, nullptr, choices, false, help};
}

key_spec text(std::string_view name, text_field f, text_check check, std::string_view allowed,
              std::string_view help, bool secret = false) {
  return {name, f, 0, 0, check, allowed, secret, help};
}

// --- string rules ---------------------------------------------------------------------------

bool is_digit(char ch) {
  return ch >= '0' && ch <= '9';
}

bool is_alnum(char ch) {
  return is_digit(ch) || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
}

bool all_of_set(std::string_view s, std::string_view extra) {
  return std::all_of(s.begin(), s.end(), [extra](char ch) {
    return is_alnum(ch) || extra.find(ch) != std::string_view::npos;
  });
}

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

bool valid_node_id(std::string_view v) { // empty is allowed: filled with <hostname>-<pid>
  return v.size() <= 64 && all_of_set(v, "._-");
}

bool valid_schema(std::string_view v) {
  return !v.empty() && v.size() <= 63 && !is_digit(v.front()) &&
         std::all_of(v.begin(), v.end(), [](char ch) {
           return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_';
         });
}

bool valid_key_prefix(std::string_view v) {
  return !v.empty() && v.size() <= 64 && all_of_set(v, ":_.-");
}

bool valid_port(std::string_view p) {
  int port = -1;
  auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), port);
  return !p.empty() && p.size() <= 5 && is_digit(p.front()) && ec == std::errc{} &&
         end == p.data() + p.size() && port <= 65535;
}

bool valid_listen(std::string_view v) {
  auto colon = v.rfind(':');
  if (colon == std::string_view::npos || !valid_port(v.substr(colon + 1))) {
    return false;
  }
  auto host = v.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') { // [IPv6]
    auto inner = host.substr(1, host.size() - 2);
    return std::all_of(inner.begin(), inner.end(), [](char ch) {
      return is_digit(ch) || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F') || ch == ':' ||
             ch == '.';
    });
  }
  return !host.empty() && host.size() <= 253 && all_of_set(host, ".-");
}

bool valid_hh_mm(std::string_view v) {
  if (v.size() != 5 || v[2] != ':' || !is_digit(v[0]) || !is_digit(v[1]) || !is_digit(v[3]) ||
      !is_digit(v[4])) {
    return false;
  }
  return (v[0] - '0') * 10 + (v[1] - '0') < 24 && (v[3] - '0') * 10 + (v[4] - '0') < 60;
}

// URLs are printed back into TOML and logs: printable ASCII only (anything else is
// percent-encoded in a URL anyway), which also keeps an error message on one line.
bool url_chars(std::string_view v) {
  return std::all_of(v.begin(), v.end(), [](char ch) { return ch > ' ' && ch < 0x7f; });
}

bool valid_redis_url(std::string_view v) {
  return (starts_with(v, "redis://") || starts_with(v, "rediss://")) && url_chars(v);
}

bool valid_optional_redis_url(std::string_view v) { // empty: the queue or cache shares redis.url
  return v.empty() || valid_redis_url(v);
}

/// Empty, or a path of printable characters (it is printed back into TOML and logs).
bool valid_optional_path(std::string_view v) {
  return v.size() <= 4096 &&
         std::all_of(v.begin(), v.end(), [](char ch) { return ch >= ' ' && ch < 0x7f; });
}

bool valid_postgres_url(std::string_view v) {
  return (starts_with(v, "postgresql://") || starts_with(v, "postgres://")) && url_chars(v);
}

// --- the table ------------------------------------------------------------------------------

using C = config;
using node_s = node_section;
using http_s = http_section;
using redis_s = redis_section;
using pg_s = postgres_section;
using sess_s = sessions_section;
using sync_s = sync_section;
using ret_s = retention_section;

/// The keys of every section but [cache] and [queues…], in file order.
std::vector<key_spec> core_keys() {
  return {
      text("node.id", &at<&C::node, &node_s::id>, valid_node_id,
           "empty (<hostname>-<pid>) or 1-64 characters of [A-Za-z0-9._-]",
           "name of this node in logs and metrics"),
      integer("node.actor_threads", &at<&C::node, &node_s::actor_threads>, 1, 256,
              "CAF scheduler worker threads"),
      choice("node.log_level", &at<&C::node, &node_s::log_level>, "error, warn, info, debug",
             "least severe level written to the log"),

      text("http.listen", &at<&C::http, &http_s::listen>, valid_listen,
           "host:port with port 0..65535", "address the HTTP API binds; port 0 picks a free one"),
      integer("http.io_threads", &at<&C::http, &http_s::io_threads>, 1, 256,
              "threads serving HTTP connections"),
      integer("http.max_body_bytes", &at<&C::http, &http_s::max_body_bytes>, 1024, 67108864,
              "largest request body accepted, in bytes"),
      integer("http.max_header_bytes", &at<&C::http, &http_s::max_header_bytes>, 1024, 1048576,
              "largest request header block accepted, in bytes"),
      integer("http.max_connections", &at<&C::http, &http_s::max_connections>, 1, 1000000,
              "open client connections at most"),
      integer("http.header_timeout_ms", &at<&C::http, &http_s::header_timeout_ms>, 100, 600000,
              "time a client has to send the request headers, in ms"),
      integer("http.idle_timeout_ms", &at<&C::http, &http_s::idle_timeout_ms>, 100, 3600000,
              "an idle keep-alive connection is closed after this long, in ms"),
      integer("http.drain_timeout_ms", &at<&C::http, &http_s::drain_timeout_ms>, 0, 600000,
              "on SIGTERM, how long in-flight requests may still finish, in ms"),

      text("auth.api_tokens_file", &at<&C::auth, &auth_section::api_tokens_file>,
           valid_optional_path, "empty or a file path of printable characters",
           "file of API tokens, one per line (# comments); they may call every route but "
           "/v1/admin/..., /v1/status and /v1/cluster; empty: none; re-read on SIGHUP"),
      text("auth.admin_tokens_file", &at<&C::auth, &auth_section::admin_tokens_file>,
           valid_optional_path, "empty or a file path of printable characters",
           "file of admin tokens, one per line (# comments); they may call every route; "
           "empty: none; re-read on SIGHUP"),
      boolean("auth.protect_metrics", &at<&C::auth, &auth_section::protect_metrics>,
              "/metrics and the status page (GET /) need a token too; needs a tokens file"),

      text("encryption.keys_file", &at<&C::encryption, &encryption_section::keys_file>,
           valid_optional_path, "empty or a file path of printable characters",
           "file of encryption keys, key_id:base64(32 bytes) per line (# comments), the first "
           "the current key; session data is stored in Redis as AES-256-GCM; empty: plaintext; "
           "re-read on SIGHUP"),
      integer("encryption.rotate_batch", &at<&C::encryption, &encryption_section::rotate_batch>, 1,
              100000,
              "session keys the rotation pass scans per Redis master and sync run (SCAN COUNT)"),
      integer("encryption.rotate_interval_s",
              &at<&C::encryption, &encryption_section::rotate_interval_s>, 0, 604800,
              "a new rotation pass (re-encrypt values under older keys, count them per key) "
              "starts this long after the last one ended, in s; 0: at once"),

      text("redis.url", &at<&C::redis, &redis_s::url>, valid_redis_url,
           "a redis:// or rediss:// (TLS) URL without spaces",
           "Redis server, rediss:// for TLS; the password is masked when printed", true),
      text("redis.queue_url", &at<&C::redis, &redis_s::queue_url>, valid_optional_redis_url,
           "empty (redis.url) or a redis:// or rediss:// (TLS) URL without spaces",
           "the job queue's own Redis (same TLS files); empty: redis.url; the password is "
           "masked when printed",
           true),
      text("redis.cache_url", &at<&C::redis, &redis_s::cache_url>, valid_optional_redis_url,
           "empty (redis.url) or a redis:// or rediss:// (TLS) URL without spaces",
           "the cache's own Redis (same TLS files; maxmemory-policy allkeys-lru advised); empty: "
           "redis.url; the password is masked when printed",
           true),
      text("redis.tls_ca_file", &at<&C::redis, &redis_s::tls_ca_file>, valid_optional_path,
           "empty or a file path of printable characters",
           "CA certificates (PEM) that verify a rediss:// server; empty: the system's"),
      text("redis.tls_cert_file", &at<&C::redis, &redis_s::tls_cert_file>, valid_optional_path,
           "empty or a file path of printable characters",
           "client certificate (PEM, chain allowed) sessiond shows a rediss:// server that asks "
           "for one (tls-auth-clients); empty: none; set with redis.tls_key_file"),
      text("redis.tls_key_file", &at<&C::redis, &redis_s::tls_key_file>, valid_optional_path,
           "empty or a file path of printable characters",
           "private key (PEM, unencrypted) of redis.tls_cert_file; empty: none"),
      integer("redis.connections", &at<&C::redis, &redis_s::connections>, 1, 64,
              "connections to Redis"),
      integer("redis.connect_timeout_ms", &at<&C::redis, &redis_s::connect_timeout_ms>, 10, 60000,
              "time allowed to connect to Redis, in ms"),
      integer("redis.command_timeout_ms", &at<&C::redis, &redis_s::command_timeout_ms>, 10, 60000,
              "time allowed for one Redis command, in ms"),
      integer("redis.wait_replicas", &at<&C::redis, &redis_s::wait_replicas>, 0, 16,
              "replicas that must take a session write (WAIT) before it is acknowledged; 0: "
              "acknowledged once the master has it"),
      integer("redis.wait_timeout_ms", &at<&C::redis, &redis_s::wait_timeout_ms>, 1, 60000,
              "how long a session write waits for redis.wait_replicas replicas, in ms; then 503"),
      integer("redis.reconnect_min_ms", &at<&C::redis, &redis_s::reconnect_min_ms>, 1, 60000,
              "first delay before reconnecting to Redis, in ms"),
      integer("redis.reconnect_max_ms", &at<&C::redis, &redis_s::reconnect_max_ms>, 1, 600000,
              "longest delay between reconnect attempts, in ms"),
      text("redis.key_prefix", &at<&C::redis, &redis_s::key_prefix>, valid_key_prefix,
           "1-64 characters of [A-Za-z0-9:_.-]", "prefix of every Redis key sessiond writes"),

      text("postgres.url", &at<&C::postgres, &pg_s::url>, valid_postgres_url,
           "a postgresql:// or postgres:// URL without spaces",
           "PostgreSQL database; the password is masked when printed", true),
      text("postgres.schema", &at<&C::postgres, &pg_s::schema>, valid_schema,
           "1-63 characters of [a-z0-9_], not starting with a digit",
           "schema holding sessiond's tables (created when missing)"),
      boolean("postgres.migrate_on_start", &at<&C::postgres, &pg_s::migrate_on_start>,
              "apply the schema migrations at start-up"),
      integer("postgres.connect_timeout_ms", &at<&C::postgres, &pg_s::connect_timeout_ms>, 100,
              600000, "time allowed to connect to PostgreSQL, in ms"),
      integer("postgres.statement_timeout_ms", &at<&C::postgres, &pg_s::statement_timeout_ms>, 100,
              3600000, "time allowed for one SQL statement, in ms"),
      integer("postgres.pool_size", &at<&C::postgres, &pg_s::pool_size>, 1, 64,
              "connections serving sessions from PostgreSQL (read-through, the modes that write "
              "PostgreSQL first, degraded serving while Redis is down)"),

      choice("sessions.mode", &at<&C::sessions, &sess_s::mode>,
             "postgres, shadow, redis-read, redis-primary", "where sessions are read and written"),
      integer("sessions.ttl_s", &at<&C::sessions, &sess_s::ttl_s>, 1, 31536000,
              "idle time after which a session expires, in s"),
      integer("sessions.touch_interval_s", &at<&C::sessions, &sess_s::touch_interval_s>, 0, 86400,
              "reads slide the idle TTL at most once per interval (0: every read), in s"),
      integer("sessions.max_lifetime_s", &at<&C::sessions, &sess_s::max_lifetime_s>, 1, 315360000,
              "sliding never keeps a session alive past this age, in s"),
      integer("sessions.tombstone_ttl_s", &at<&C::sessions, &sess_s::tombstone_ttl_s>, 1, 315360000,
              "how long a revoked session id stays refused, in s"),
      integer("sessions.shards", &at<&C::sessions, &sess_s::shards>, 1, max_shards,
              "session shard actors that session ids are hashed onto"),
      integer("sessions.max_in_flight", &at<&C::sessions, &sess_s::max_in_flight>, 1, 1000000,
              "requests in flight per shard; beyond it the shard answers 503 at once"),
      integer("sessions.retry_after_s", &at<&C::sessions, &sess_s::retry_after_s>, 1, 3600,
              "Retry-After sent with a 503, in s"),
      integer("sessions.max_data_bytes", &at<&C::sessions, &sess_s::max_data_bytes>, 64, 67108864,
              "largest serialized session data, in bytes"),
      choice("sessions.on_redis_down", &at<&C::sessions, &sess_s::on_redis_down>,
             "postgres, reject", "while Redis is down: serve from PostgreSQL (degraded) or refuse"),
      choice("sessions.mixed_modes", &at<&C::sessions, &sess_s::mixed_modes>, "refuse, warn",
             "a start next to live nodes in a mode that cannot run beside this one (only shadow "
             "and redis-read can): refuse it, or warn and start"),

      integer("sync.interval_ms", &at<&C::sync, &sync_s::interval_ms>, 100, 86400000,
              "how often changed sessions are written to PostgreSQL, in ms"),
      integer("sync.batch_size", &at<&C::sync, &sync_s::batch_size>, 1, 100000,
              "sessions per PostgreSQL write batch"),
      integer("sync.max_dirty", &at<&C::sync, &sync_s::max_dirty>, 1, 100000000,
              "backlog of changed sessions that starts a sync before the interval is up"),
      integer("sync.max_backoff_ms", &at<&C::sync, &sync_s::max_backoff_ms>, 100, 3600000,
              "longest wait between retries of a failed write, in ms"),
      integer("sync.activity_interval_s", &at<&C::sync, &sync_s::activity_interval_s>, 1, 86400,
              "how often session activity is recorded in PostgreSQL, in s"),
      integer("sync.connections", &at<&C::sync, &sync_s::connections>, 1, 64,
              "PostgreSQL connections a sync run writes on in parallel (one dirty set each)"),
      integer("sync.max_rejected_per_run", &at<&C::sync, &sync_s::max_rejected_per_run>, 0, 1000000,
              "rows PostgreSQL refuses that one run sets aside at most; past it the run fails "
              "(0: never set aside)"),

      boolean("metrics.enabled", &at<&C::metrics, &metrics_section::enabled>,
              "serve Prometheus metrics"),
      integer("metrics.redis_poll_ms", &at<&C::metrics, &metrics_section::redis_poll_ms>, 100,
              3600000, "how often Redis statistics are sampled for metrics, in ms"),

      boolean("retention.enabled", &at<&C::retention, &ret_s::enabled>,
              "delete old sessions from PostgreSQL once a day"),
      boolean("retention.dry_run", &at<&C::retention, &ret_s::dry_run>,
              "count what would be deleted, delete nothing"),
      integer("retention.days", &at<&C::retention, &ret_s::days>, 1, 36500,
              "an ended session row is deleted once idle this many days"),
      text("retention.at", &at<&C::retention, &ret_s::at>, valid_hh_mm, "HH:MM from 00:00 to 23:59",
           "time of day the retention run starts, UTC"),
      boolean("retention.catch_up", &at<&C::retention, &ret_s::catch_up>,
              "a minute after start-up, run if no run started since the last retention.at"),
      integer("retention.batch_size", &at<&C::retention, &ret_s::batch_size>, 1, 1000000,
              "rows deleted per statement"),
      integer("retention.pause_ms", &at<&C::retention, &ret_s::pause_ms>, 0, 600000,
              "pause between two delete statements, in ms"),
      integer("retention.max_rows_per_run", &at<&C::retention, &ret_s::max_rows_per_run>, 1,
              1000000000, "rows deleted per run at most"),
  };
}

const std::vector<key_spec>& key_table() {
  static const std::vector<key_spec> table = [] {
    std::vector<key_spec> keys = core_keys();
    std::vector<key_spec> cache = cache_keys(); // [cache] sits between [sync] and [metrics]
    auto metrics = std::find_if(keys.begin(), keys.end(), [](const key_spec& spec) {
      return starts_with(spec.name, "metrics.");
    });
    keys.insert(metrics, cache.begin(), cache.end());
    std::vector<key_spec> queues = queue_keys(); // [queues] and [queues.defaults] come last
    keys.insert(keys.end(), queues.begin(), queues.end());
    return keys;
  }();
  return table;
}

const std::vector<cross_rule>& cross_rules() {
  static const std::vector<cross_rule> rules = {
      {"sessions.touch_interval_s", "<=", "sessions.ttl_s"},
      {"sessions.max_lifetime_s", ">=", "sessions.ttl_s"},
      {"redis.reconnect_max_ms", ">=", "redis.reconnect_min_ms"},
      {"queues.defaults.max_backoff_ms", ">=", "queues.defaults.backoff_ms"},
  };
  return rules;
}

/// Variables of the old Node service; `translate` maps the raw value onto the key's value.
struct legacy_alias {
  std::string_view var;
  std::string_view key;
  std::string (*translate)(std::string_view var, const std::string& raw);
};

std::string redis_only_to_mode(std::string_view var, const std::string& raw);

constexpr std::array<legacy_alias, 5> legacy_aliases = {{
    {"USE_REDIS_ONLY_SESSIONS", "sessions.mode", redis_only_to_mode},
    {"SESSION_SYNC_INTERVAL", "sync.interval_ms", nullptr},
    {"SESSION_TTL", "sessions.ttl_s", nullptr},
    {"TENANT_CACHE_TTL", "cache.tenant_ttl_s", nullptr},
    {"SESSION_METRICS_ENABLED", "metrics.enabled", nullptr},
}};

constexpr std::string_view env_prefix = "SESSIOND_";
/// SESSIOND_* variables that are not keys (SESSIOND_CONFIG: the config file path).
constexpr std::array<std::string_view, 1> reserved_env = {"SESSIOND_CONFIG"};

constexpr std::string_view bool_words = "true, false, 1, 0, yes, no, on, off";

// --- lookups and printing -------------------------------------------------------------------

const key_spec* find_key(std::string_view name) {
  for (const key_spec& spec : key_table()) {
    if (spec.name == name) {
      return &spec;
    }
  }
  return nullptr;
}

std::string_view section_of(std::string_view name) {
  return name.substr(0, name.find('.'));
}

bool is_section(std::string_view section) {
  const auto& table = key_table();
  return std::any_of(table.begin(), table.end(),
                     [section](const key_spec& spec) { return section_of(spec.name) == section; });
}

std::string env_name(const key_spec& spec) {
  std::string var(env_prefix);
  for (char ch : spec.name) {
    var += ch == '.' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  }
  return var;
}

const key_spec* find_env(std::string_view var) {
  for (const key_spec& spec : key_table()) {
    if (env_name(spec) == var) {
      return &spec;
    }
  }
  return nullptr;
}

/// A TOML basic string; escapes control characters, so the result is always one line.
std::string quote(std::string_view s) {
  std::string out = "\"";
  for (char ch : s) {
    auto byte = static_cast<unsigned char>(ch);
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += ch;
    } else if (ch == '\n' || ch == '\t') {
      out += ch == '\n' ? "\\n" : "\\t";
    } else if (byte < 0x20 || byte == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04X", static_cast<unsigned>(byte));
      out += buf;
    } else {
      out += ch;
    }
  }
  return out + "\"";
}

/// Replaces the values of `password=` query parameters with "****".
void mask_query_password(std::string& url) {
  auto pos = url.find('?');
  while (pos != std::string::npos) {
    std::size_t start = pos + 1;
    std::size_t end = std::min(url.find('&', start), url.find('#', start));
    end = end == std::string::npos ? url.size() : end;
    constexpr std::string_view key = "password=";
    if (url.compare(start, key.size(), key) == 0 && end > start + key.size()) {
      url.replace(start + key.size(), end - start - key.size(), "****");
      end = start + key.size() + 4;
    }
    pos = end < url.size() && url[end] == '&' ? end : std::string::npos;
  }
}

/// scheme://user:PASSWORD@host… → scheme://user:****@host…; a URL without one is unchanged.
/// The userinfo ends at the LAST '@' before the query, so a password holding an unencoded
/// '@' or '/' is still masked whole (over-masking is the safe side).
std::string mask_url(std::string url) {
  // A list of URLs (a Redis Cluster's seeds): each one masked on its own.
  if (auto comma = url.find(',');
      comma != std::string::npos && url.find("://", comma) != std::string::npos)
    return mask_url(url.substr(0, comma)) + "," + mask_url(url.substr(comma + 1));
  auto scheme = url.find("://");
  if (scheme != std::string::npos) {
    std::size_t start = scheme + 3;
    std::size_t end = std::min(url.find('?', start), url.find('#', start));
    end = end == std::string::npos ? url.size() : end;
    auto at_sign = std::string_view(url).substr(start, end - start).rfind('@');
    if (at_sign != std::string_view::npos) {
      at_sign += start;
      auto colon = url.find(':', start);
      if (colon < at_sign && colon + 1 < at_sign) {
        url.replace(colon + 1, at_sign - colon - 1, "****");
      }
    }
  }
  mask_query_password(url);
  return url;
}

/// Accessors take config&; the printers only read through them.
config& readable(const config& c) {
  return const_cast<config&>(c);
}

std::string real_literal(double v) {
  std::array<char, 64> buf{};
  auto [end, ec] = std::to_chars(buf.data(), buf.data() + buf.size(), v);
  std::string text(buf.data(), ec == std::errc{} ? end : buf.data());
  if (text.find_first_of(".en") == std::string::npos) { // 'n': inf and nan are floats already
    text += ".0";
  }
  return text;
}

/// The key's value in `c` as a TOML literal; secrets masked when `mask` is set.
std::string literal(const config& c, const key_spec& spec, bool mask) {
  return std::visit(
      overloaded{
          [&](int_field f) { return std::to_string(f(readable(c))); },
          [&](bool_field f) { return std::string(f(readable(c)) ? "true" : "false"); },
          [&](text_field f) {
            const std::string& v = f(readable(c));
            return quote(mask && spec.secret ? mask_url(v) : v);
          },
          [&](real_field f) { return real_literal(f(readable(c))); },
      },
      spec.field);
}

std::string range_text(const key_spec& spec) {
  return std::to_string(spec.min) + ".." + std::to_string(spec.max);
}

std::string real_range_text(const key_spec& spec) {
  return "more than " + std::to_string(spec.min) + ", at most " + std::to_string(spec.max);
}

std::string allowed_text(const key_spec& spec) {
  return std::visit(overloaded{
                        [&](int_field) {
                          std::string text = range_text(spec);
                          for (const cross_rule& rule : cross_rules()) {
                            if (rule.key == spec.name) {
                              text += ", " + std::string(rule.op) + " " + std::string(rule.other);
                            }
                          }
                          return text;
                        },
                        [](bool_field) { return std::string("true, false"); },
                        [&](text_field) { return std::string(spec.allowed); },
                        [&](real_field) { return real_range_text(spec); },
                    },
                    spec.field);
}

// --- errors ---------------------------------------------------------------------------------

/// key name → the environment variable that set it last (for "set by" in messages).
using origin_map = std::map<std::string_view, std::string>;

[[noreturn]] void fail(const std::string& line) {
  throw config_error("config: " + line);
}

std::string clause(std::string_view allowed, const origin_map& origins, std::string_view key) {
  std::string text = " (allowed: " + std::string(allowed);
  if (auto it = origins.find(key); it != origins.end()) {
    text += "; set by " + it->second;
  }
  return text + ")";
}

std::string one_line(std::string_view s) {
  std::string out(s);
  std::replace_if(
      out.begin(), out.end(), [](char ch) { return ch == '\n' || ch == '\r'; }, ' ');
  return out;
}

// --- validation -----------------------------------------------------------------------------

bool is_choice(std::string_view choices, std::string_view v) {
  while (!choices.empty()) {
    auto comma = choices.find(", ");
    if (choices.substr(0, comma) == v) {
      return true;
    }
    choices = comma == std::string_view::npos ? std::string_view{} : choices.substr(comma + 2);
  }
  return false;
}

void check_key(const config& c, const key_spec& spec, const origin_map& origins) {
  std::string name(spec.name);
  std::visit(overloaded{
                 [&](int_field f) {
                   std::int64_t v = f(readable(c));
                   if (v < spec.min || v > spec.max) {
                     fail(name + " = " + std::to_string(v) + " is out of range" +
                          clause(range_text(spec), origins, spec.name));
                   }
                 },
                 [](bool_field) {},
                 [&](text_field f) {
                   const std::string& v = f(readable(c));
                   if (spec.check ? !spec.check(v) : !is_choice(spec.allowed, v)) {
                     fail(name + " = " + literal(c, spec, true) + " is invalid" +
                          clause(spec.allowed, origins, spec.name));
                   }
                 },
                 [&](real_field f) {
                   double v = f(readable(c));
                   if (!(v > spec.min && v <= spec.max)) { // written so that NaN is refused too
                     fail(name + " = " + real_literal(v) + " is out of range" +
                          clause(real_range_text(spec), origins, spec.name));
                   }
                 },
             },
             spec.field);
}

void check_cross_rule(const config& c, const cross_rule& rule, const origin_map& origins) {
  std::int64_t v = std::get<int_field>(find_key(rule.key)->field)(readable(c));
  std::int64_t other = std::get<int_field>(find_key(rule.other)->field)(readable(c));
  bool ok = rule.op == "<=" ? v <= other : v >= other;
  if (!ok) {
    std::string allowed =
        std::string(rule.op) + " " + std::string(rule.other) + " = " + std::to_string(other);
    fail(std::string(rule.key) + " = " + std::to_string(v) + " is out of range" +
         clause(allowed, origins, rule.key));
  }
}

void validate_with(const config& c, const origin_map& origins) {
  for (const key_spec& spec : key_table()) {
    check_key(c, spec, origins);
  }
  for (const cross_rule& rule : cross_rules()) {
    check_cross_rule(c, rule, origins);
  }
  if (c.redis.tls_cert_file.empty() != c.redis.tls_key_file.empty()) {
    std::string_view set =
        c.redis.tls_cert_file.empty() ? "redis.tls_key_file" : "redis.tls_cert_file";
    std::string_view missing =
        c.redis.tls_cert_file.empty() ? "redis.tls_cert_file" : "redis.tls_key_file";
    fail(std::string(set) + " is set without " + std::string(missing) +
         clause("both or neither", origins, set));
  }
  if (c.redis.wait_replicas > 0 && c.redis.wait_timeout_ms >= c.redis.command_timeout_ms)
    fail("redis.wait_timeout_ms = " + std::to_string(c.redis.wait_timeout_ms) +
         " must be below redis.command_timeout_ms = " + std::to_string(c.redis.command_timeout_ms) +
         " when redis.wait_replicas is set" +
         clause("< redis.command_timeout_ms", origins, "redis.wait_timeout_ms"));
  if (c.auth.protect_metrics && c.auth.api_tokens_file.empty() && c.auth.admin_tokens_file.empty())
    fail("auth.protect_metrics = true needs auth.api_tokens_file or auth.admin_tokens_file" +
         clause("a tokens file set, or protect_metrics = false", origins, "auth.protect_metrics"));
  validate_cache(c);
  validate_queues(c);
}

// --- the TOML file --------------------------------------------------------------------------

std::string render(const toml::node& node) {
  if (const auto* s = node.as_string()) {
    return quote(s->get());
  }
  if (node.is_array()) {
    return "[...]";
  }
  if (node.is_table()) {
    return "{...}";
  }
  std::ostringstream out;
  node.visit([&out](const auto& value) { out << value; });
  return one_line(out.str());
}

[[noreturn]] void wrong_type(std::string_view name, const toml::node& node,
                             std::string_view expected) {
  fail(std::string(name) + " = " + render(node) + " has the wrong type (expected " +
       std::string(expected) + ")");
}

void set_from_toml(config& c, const key_spec& spec, const toml::node& node) {
  std::visit(overloaded{
                 [&](int_field f) {
                   const auto* v = node.as_integer();
                   v ? void(f(c) = v->get()) : wrong_type(spec.name, node, "an integer");
                 },
                 [&](bool_field f) {
                   const auto* v = node.as_boolean();
                   v ? void(f(c) = v->get()) : wrong_type(spec.name, node, "a boolean");
                 },
                 [&](text_field f) {
                   const auto* v = node.as_string();
                   v ? void(f(c) = v->get()) : wrong_type(spec.name, node, "a string");
                 },
                 [&](real_field f) { // `ratio = 1` means 1.0: TOML has no other way to say it
                   if (const auto* v = node.as_floating_point()) {
                     f(c) = v->get();
                   } else if (const auto* i = node.as_integer()) {
                     f(c) = static_cast<double>(i->get());
                   } else {
                     wrong_type(spec.name, node, "a number");
                   }
                 },
             },
             spec.field);
}

void apply_file(config& c, const toml::table& root, const std::string& where,
                cache_tables& namespaces, queue_tables& named) {
  for (auto&& [key, node] : root) {
    std::string section(key.str());
    if (!node.is_table()) {
      if (is_section(section)) {
        wrong_type(section, node, "a table");
      }
      fail("unknown key " + quote(section) + " (in " + where + ")");
    }
    if (!is_section(section)) {
      fail("unknown section " + quote(section) + " (in " + where + ")");
    }
    if (section == "cache") { // its namespace tables are below it
      read_cache(c, *node.as_table(), where, namespaces);
      continue;
    }
    if (section == "queues") { // tables below it: defaults, named queues, schedules
      read_queues(c, *node.as_table(), where, named);
      continue;
    }
    for (auto&& [sub, value] : *node.as_table()) {
      std::string name = section + "." + std::string(sub.str());
      const key_spec* spec = find_key(name);
      if (spec == nullptr) {
        fail("unknown key " + quote(name) + " (in " + where + ")");
      }
      set_from_toml(c, *spec, value);
    }
  }
}

/// toml++ 3.3.0 (Debian 12) reaches __builtin_unreachable, undefined behaviour, on some non-ASCII
/// characters outside strings (upstream issues 190 and 295). Every sessiond value is ASCII, so
/// non-ASCII text is refused before parsing, with its position; a leading UTF-8 BOM is allowed.
void require_ascii(std::string_view text, const std::string& where) {
  const std::size_t start = text.rfind("\xEF\xBB\xBF", 0) == 0 ? 3 : 0;
  std::size_t line = 1;
  std::size_t column = 1;
  for (std::size_t i = start; i < text.size(); ++i) {
    if (static_cast<unsigned char>(text[i]) >= 0x80)
      fail("syntax error in " + where + " at line " + std::to_string(line) + ", column " +
           std::to_string(column) + ": only ASCII characters are allowed");
    column = text[i] == '\n' ? 1 : column + 1;
    line += text[i] == '\n' ? 1 : 0;
  }
}

toml::table parse_toml(const std::string& text, const std::string& source,
                       const std::string& where) {
  require_ascii(text, where);
  try {
    return toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    const auto& begin = e.source().begin;
    fail("syntax error in " + where + " at line " + std::to_string(begin.line) + ", column " +
         std::to_string(begin.column) + ": " + one_line(e.description()));
  }
}

std::string read_file(const std::string& path) {
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(std::fopen(path.c_str(), "rb"),
                                                       &std::fclose);
  if (!file) {
    fail("cannot read config file " + quote(path) + ": " + std::strerror(errno));
  }
  std::string text;
  std::array<char, 65536> buf;
  std::size_t n = 0;
  while ((n = std::fread(buf.data(), 1, buf.size(), file.get())) > 0) {
    text.append(buf.data(), n);
  }
  if (std::ferror(file.get()) != 0) {
    fail("cannot read config file " + quote(path) + ": " + std::strerror(errno));
  }
  return text;
}

// --- the environment ------------------------------------------------------------------------

std::optional<bool> parse_bool(std::string_view raw) {
  std::string v;
  for (char ch : raw) {
    v += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  }
  if (v == "true" || v == "1" || v == "yes" || v == "on") {
    return true;
  }
  if (v == "false" || v == "0" || v == "no" || v == "off") {
    return false;
  }
  return std::nullopt;
}

bool env_bool(std::string_view var, const std::string& raw) {
  auto v = parse_bool(raw);
  if (!v) {
    fail(std::string(var) + " = " + quote(raw) +
         " is not a boolean (allowed: " + std::string(bool_words) + ")");
  }
  return *v;
}

std::int64_t env_int(std::string_view var, const std::string& raw, const key_spec& spec) {
  std::int64_t v = 0;
  auto [end, ec] = std::from_chars(raw.data(), raw.data() + raw.size(), v);
  std::string head = std::string(var) + " = " + quote(raw);
  if (ec == std::errc::result_out_of_range) {
    fail(head + " is out of range (allowed: " + range_text(spec) + ")");
  }
  if (ec != std::errc{} || end != raw.data() + raw.size()) {
    fail(head + " is not an integer (allowed: " + range_text(spec) + ")");
  }
  return v;
}

/// A decimal number: digits, an optional leading '-' and '.', e.g. 0.75 (no exponent, no inf).
double env_real(std::string_view var, const std::string& raw, const key_spec& spec) {
  double v = 0;
  const char* last = raw.data() + raw.size();
  auto [end, ec] = std::from_chars(raw.data(), last, v, std::chars_format::fixed);
  std::string head = std::string(var) + " = " + quote(raw);
  if (ec == std::errc::result_out_of_range) {
    fail(head + " is out of range (allowed: " + real_range_text(spec) + ")");
  }
  if (ec != std::errc{} || end != last || raw.find_first_not_of("-.0123456789") != raw.npos) {
    fail(head + " is not a decimal number (allowed: " + real_range_text(spec) + ")");
  }
  return v;
}

std::string redis_only_to_mode(std::string_view var, const std::string& raw) {
  return env_bool(var, raw) ? "redis-primary" : "postgres";
}

void set_from_env(config& c, const key_spec& spec, std::string_view var, const std::string& raw,
                  origin_map& origins) {
  std::visit(overloaded{
                 [&](int_field f) { f(c) = env_int(var, raw, spec); },
                 [&](bool_field f) { f(c) = env_bool(var, raw); },
                 [&](text_field f) { f(c) = raw; },
                 [&](real_field f) { f(c) = env_real(var, raw, spec); },
             },
             spec.field);
  origins[spec.name] = std::string(var);
}

void apply_legacy_env(config& c, const env_map& env, origin_map& origins) {
  for (const legacy_alias& alias : legacy_aliases) {
    auto it = env.find(std::string(alias.var));
    if (it == env.end()) {
      continue;
    }
    std::string value = alias.translate ? alias.translate(alias.var, it->second) : it->second;
    set_from_env(c, *find_key(alias.key), alias.var, value, origins);
  }
}

/// Whether SESSIOND_<X>_… starts with a section name, so a typo in the key is reported rather
/// than ignored.
bool names_a_section(std::string_view var) {
  std::string rest(var.substr(env_prefix.size()));
  for (const key_spec& spec : key_table()) {
    std::string section(section_of(spec.name));
    for (auto& ch : section) {
      ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    }
    if (rest.size() > section.size() && rest.compare(0, section.size(), section) == 0 &&
        rest[section.size()] == '_') {
      return true;
    }
  }
  return false;
}

void apply_sessiond_env(config& c, const env_map& env, origin_map& origins) {
  for (const auto& [var, raw] : env) {
    if (!starts_with(var, env_prefix) ||
        std::find(reserved_env.begin(), reserved_env.end(), var) != reserved_env.end()) {
      continue;
    }
    const key_spec* spec = find_env(var);
    if (spec == nullptr && !names_a_section(var)) {
      continue; // tooling variables such as SESSIOND_ROOT are not configuration
    }
    if (spec == nullptr) {
      fail("unknown environment variable " + quote(var) +
           " (allowed: SESSIOND_<SECTION>_<KEY> of a key in docs/configuration.md)");
    }
    set_from_env(c, *spec, var, raw, origins);
  }
}

/// <hostname>-<pid>, reduced to [A-Za-z0-9._-] and 64 characters so it always validates.
std::string default_node_id() {
  std::array<char, 256> buf{};
  std::string_view host = "sessiond";
  if (::gethostname(buf.data(), buf.size() - 1) == 0 && buf[0] != '\0') {
    host = buf.data();
  }
  std::string pid = std::to_string(::getpid());
  std::string id;
  for (char ch : host) {
    id += is_alnum(ch) || ch == '.' || ch == '_' || ch == '-' ? ch : '-';
  }
  id.resize(std::min(id.size(), 64 - 1 - pid.size()));
  return id + "-" + pid;
}

config build(const toml::table* file, const std::string& where, const env_map& env) {
  config c;
  origin_map origins;
  cache_tables namespaces;
  queue_tables named;
  if (file != nullptr) {
    apply_file(c, *file, where, namespaces, named);
  }
  apply_legacy_env(c, env, origins);
  apply_sessiond_env(c, env, origins);
  apply_cache_tables(c, namespaces); // after the environment: "tenant" takes the final TTL
  apply_queue_tables(c, named); // after the environment: named queues inherit the final defaults
  if (c.node.id.empty()) {
    c.node.id = default_node_id();
  }
  validate_with(c, origins);
  return c;
}

} // namespace detail

using namespace detail;

env_map process_env() {
  env_map env;
  for (char** entry = ::environ; entry != nullptr && *entry != nullptr; ++entry) {
    std::string_view text(*entry);
    auto eq = text.find('=');
    if (eq != std::string_view::npos) {
      env.emplace(text.substr(0, eq), text.substr(eq + 1));
    }
  }
  return env;
}

config load(const std::string& path, const env_map& env) {
  if (path.empty()) {
    return build(nullptr, {}, env);
  }
  std::string where = "file " + path;
  toml::table root = parse_toml(read_file(path), path, where);
  return build(&root, where, env);
}

config load_string(const std::string& toml_text, const env_map& env) {
  const std::string where = "TOML text";
  toml::table root = parse_toml(toml_text, "", where);
  return build(&root, where, env);
}

void validate(const config& c) {
  validate_with(c, {});
}

std::string to_toml(const config& c) {
  std::string out = "# sessiond effective configuration; passwords are masked as ****\n";
  std::string_view section;
  for (const key_spec& spec : key_table()) {
    auto dot = spec.name.rfind('.'); // "queues.defaults.lease_ms" is lease_ms in [queues.defaults]
    if (spec.name.substr(0, dot) != section) {
      if (section == "cache") { // its namespace tables follow its keys
        out += cache_namespaces_to_toml(c);
      }
      section = spec.name.substr(0, dot);
      out += "\n[" + std::string(section) + "]\n";
    }
    out += std::string(spec.name.substr(dot + 1)) + " = " + literal(c, spec, true) + "\n";
  }
  return out + queues_to_toml(c);
}

std::vector<key_info> keys() {
  const config defaults;
  std::vector<key_info> out;
  for (const key_spec& spec : key_table()) {
    out.push_back({std::string(spec.name), env_name(spec), literal(defaults, spec, false),
                   allowed_text(spec), std::string(spec.help)});
  }
  return out;
}

bool operator==(const config& a, const config& b) {
  const auto& table = key_table();
  return std::all_of(table.begin(), table.end(),
                     [&](const key_spec& spec) {
                       return literal(a, spec, false) == literal(b, spec, false);
                     }) &&
         same_namespaces(a.cache, b.cache) &&
         a.queues.defaults.handlers == b.queues.defaults.handlers &&
         a.queues.named == b.queues.named && a.queues.schedule == b.queues.schedule;
}

bool operator!=(const config& a, const config& b) {
  return !(a == b);
}

} // namespace sessiond::config
