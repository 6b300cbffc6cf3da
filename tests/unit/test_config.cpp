// Unit tests of config/: defaults, the shipped sessiond.toml, every kind of validation error,
// environment and legacy overrides, and to_toml (masking, round trip).
#include "config/config.hpp"

#include <catch2/catch.hpp>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace cfg = sessiond::config;
using Catch::Matchers::Contains;
using Catch::Matchers::EndsWith;
using Catch::Matchers::StartsWith;

namespace {

/// The repository root, from this file's own path (the test may run from any directory).
std::string source_root() {
  std::string file = __FILE__;
  return file.substr(0, file.rfind("tests/unit/test_config.cpp"));
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

/// A file in the temp directory, removed when the test ends.
struct temp_file {
  std::string path;
  explicit temp_file(const std::string& text)
      : path("/tmp/sessiond_test_config_" + std::to_string(::getpid()) + ".toml") {
    std::ofstream(path, std::ios::binary) << text;
  }
  ~temp_file() { std::remove(path.c_str()); }
};

/// The message load_string throws, or "" when it loads.
std::string error_of(const std::string& text, const cfg::env_map& env = {}) {
  try {
    cfg::load_string(text, env);
  } catch (const cfg::config_error& e) {
    return e.what();
  }
  return "";
}

/// The value of `section.key` as to_toml prints it ("queues.defaults.x": x in [queues.defaults]).
std::string printed(const cfg::config& c, const std::string& name) {
  auto dot = name.rfind('.');
  std::string text = cfg::to_toml(c);
  auto start = text.find("\n[" + name.substr(0, dot) + "]\n");
  REQUIRE(start != std::string::npos);
  std::string block = text.substr(start, text.find("\n[", start + 1) - start) + "\n";
  std::string needle = "\n" + name.substr(dot + 1) + " = ";
  auto pos = block.find(needle);
  REQUIRE(pos != std::string::npos);
  pos += needle.size();
  return block.substr(pos, block.find('\n', pos) - pos);
}

std::string unquoted(const std::string& literal) {
  return literal.front() == '"' ? literal.substr(1, literal.size() - 2) : literal;
}

/// The bounds written in config.hpp, copied by hand so a slip in config.cpp is caught.
/// `extra` relaxes the cross-key rules so that both bounds of `name` are loadable.
struct integer_bounds {
  std::string name;
  std::int64_t min;
  std::int64_t max;
  cfg::env_map extra;
};

const std::vector<integer_bounds> header_bounds = {
    {"node.actor_threads", 1, 256, {}},
    {"http.io_threads", 1, 256, {}},
    {"encryption.rotate_batch", 1, 100000, {}},
    {"encryption.rotate_interval_s", 0, 604800, {}},
    {"http.max_body_bytes", 1024, 67108864, {}},
    {"http.max_header_bytes", 1024, 1048576, {}},
    {"http.max_connections", 1, 1000000, {}},
    {"http.header_timeout_ms", 100, 600000, {}},
    {"http.idle_timeout_ms", 100, 3600000, {}},
    {"http.drain_timeout_ms", 0, 600000, {}},
    {"redis.connections", 1, 64, {}},
    {"redis.connect_timeout_ms", 10, 60000, {}},
    {"redis.command_timeout_ms", 10, 60000, {}},
    {"redis.wait_replicas", 0, 16, {}},
    {"redis.wait_timeout_ms", 1, 60000, {}},
    {"redis.reconnect_min_ms", 1, 60000, {{"SESSIOND_REDIS_RECONNECT_MAX_MS", "600000"}}},
    {"redis.reconnect_max_ms", 1, 600000, {{"SESSIOND_REDIS_RECONNECT_MIN_MS", "1"}}},
    {"postgres.connect_timeout_ms", 100, 600000, {}},
    {"postgres.statement_timeout_ms", 100, 3600000, {}},
    {"postgres.pool_size", 1, 64, {}},
    {"sessions.ttl_s",
     1,
     31536000,
     {{"SESSIOND_SESSIONS_TOUCH_INTERVAL_S", "0"},
      {"SESSIOND_SESSIONS_MAX_LIFETIME_S", "315360000"}}},
    {"sessions.touch_interval_s", 0, 86400, {{"SESSIOND_SESSIONS_TTL_S", "86400"}}},
    {"sessions.max_lifetime_s",
     1,
     315360000,
     {{"SESSIOND_SESSIONS_TTL_S", "1"}, {"SESSIOND_SESSIONS_TOUCH_INTERVAL_S", "0"}}},
    {"sessions.tombstone_ttl_s", 1, 315360000, {}},
    {"sessions.shards", 1, 1024, {}},
    {"sessions.max_in_flight", 1, 1000000, {}},
    {"sessions.retry_after_s", 1, 3600, {}},
    {"sessions.max_data_bytes", 64, 67108864, {}},
    {"sync.interval_ms", 100, 86400000, {}},
    {"sync.batch_size", 1, 100000, {}},
    {"sync.max_dirty", 1, 100000000, {}},
    {"sync.max_backoff_ms", 100, 3600000, {}},
    {"sync.activity_interval_s", 1, 86400, {}},
    {"sync.connections", 1, 64, {}},
    {"sync.max_rejected_per_run", 0, 1000000, {}},
    {"cache.tenant_ttl_s", 1, 31536000, {}},
    {"cache.max_value_bytes", 2, 67108864, {}},
    {"cache.max_ttl_s", 1, 31536000, {}},
    {"cache.max_waiters", 1, 1000000, {}},
    {"cache.max_loads", 1, 100000, {}},
    {"cache.lock_ms", 100, 600000, {}},
    {"cache.lock_poll_ms", 1, 10000, {}},
    {"cache.invalidate_batch", 10, 100000, {}},
    {"cache.retry_after_s", 1, 3600, {}},
    {"metrics.redis_poll_ms", 100, 3600000, {}},
    {"retention.days", 1, 36500, {}},
    {"retention.batch_size", 1, 1000000, {}},
    {"retention.pause_ms", 0, 600000, {}},
    {"retention.max_rows_per_run", 1, 1000000000, {}},
    {"queues.shutdown_grace_ms", 0, 600000, {}},
    {"queues.maintenance_interval_ms", 10, 60000, {}},
    {"queues.lease_poll_ms", 5, 10000, {}},
    {"queues.max_waiters", 1, 1000000, {}},
    {"queues.max_in_flight", 1, 1000000, {}},
    {"queues.retry_after_s", 1, 3600, {}},
    {"queues.max_queues", 1, 100000, {}},
    {"queues.max_payload_bytes", 2, 67108864, {}},
    {"queues.defaults.concurrency", 0, 10000, {}},
    {"queues.defaults.lease_ms", 1000, 3600000, {}},
    {"queues.defaults.max_attempts", 1, 1000, {}},
    {"queues.defaults.backoff_ms",
     1,
     86400000,
     {{"SESSIOND_QUEUES_DEFAULTS_MAX_BACKOFF_MS", "604800000"}}},
    {"queues.defaults.max_backoff_ms",
     1,
     604800000,
     {{"SESSIOND_QUEUES_DEFAULTS_BACKOFF_MS", "1"}}},
    {"queues.defaults.max_stalled", 1, 1000, {}},
    {"queues.defaults.max_length", 1, 100000000, {}},
    {"queues.defaults.keep_completed", 0, 10000000, {}},
    {"queues.defaults.keep_failed", 0, 10000000, {}},
    {"queues.defaults.keep_age_s", 1, 31536000, {}},
    {"queues.defaults.max_wait_s", 1, 31536000, {}},
    {"queues.defaults.circuit_failures", 1, 1000, {}},
    {"queues.defaults.circuit_cooldown_ms", 100, 3600000, {}},
};

std::string toml_setting(const std::string& name, const std::string& literal) {
  auto dot = name.rfind('.');
  return "[" + name.substr(0, dot) + "]\n" + name.substr(dot + 1) + " = " + literal + "\n";
}

/// The one line a refused value gives: "config: NAME = LITERAL" then `tail`.
std::string refusal(const std::string& name, const std::string& literal, const char* tail) {
  return "config: " + name + " = " + literal + tail;
}

std::string quoted(const std::string& s) {
  return "\"" + s + "\"";
}

std::string env_name(const std::string& name) {
  for (const auto& k : cfg::keys()) {
    if (k.name == name) {
      return k.env;
    }
  }
  FAIL("no key " << name);
  return "";
}

/// Every key set to a value other than its default.
const std::string every_key_changed = R"(
[node]
id = "node-a.1"
actor_threads = 3
log_level = "debug"
[http]
listen = "[::1]:0"
io_threads = 5
max_body_bytes = 2048
max_header_bytes = 4096
max_connections = 7
header_timeout_ms = 150
idle_timeout_ms = 250
drain_timeout_ms = 0
[auth]
api_tokens_file = "/etc/sessiond/api-tokens"
admin_tokens_file = "/etc/sessiond/admin-tokens"
protect_metrics = true
[encryption]
keys_file = "/etc/sessiond/keys"
rotate_batch = 77
rotate_interval_s = 79
[redis]
url = "redis://cache.internal:6380/2"
queue_url = "rediss://jobs.internal:6390/1"
cache_url = "redis://lru.internal:6391/0"
connections = 9
connect_timeout_ms = 20
command_timeout_ms = 30
wait_replicas = 1
wait_timeout_ms = 20
reconnect_min_ms = 40
reconnect_max_ms = 50
key_prefix = "app:sess."
tls_ca_file = "/etc/ssl/redis-ca.pem"
tls_cert_file = "/etc/ssl/sessiond-node.pem"
tls_key_file = "/etc/ssl/private/sessiond-node.key"
[postgres]
url = "postgres://app@db.internal/s?application_name=a\"b\\c"
schema = "tenant_a"
migrate_on_start = false
connect_timeout_ms = 600
statement_timeout_ms = 700
pool_size = 9
[sessions]
mode = "shadow"
ttl_s = 120
touch_interval_s = 0
max_lifetime_s = 240
tombstone_ttl_s = 360
shards = 3
max_in_flight = 11
retry_after_s = 2
max_data_bytes = 128
on_redis_down = "reject"
mixed_modes = "warn"
[sync]
interval_ms = 1500
batch_size = 13
max_dirty = 17
max_backoff_ms = 1900
activity_interval_s = 23
connections = 5
max_rejected_per_run = 7
[cache]
tenant_ttl_s = 29
enabled = false
max_value_bytes = 139
max_ttl_s = 149
max_waiters = 151
max_loads = 157
lock_ms = 163
lock_poll_ms = 167
max_redis_memory_ratio = 0.25
invalidate_batch = 173
retry_after_s = 179
[metrics]
enabled = false
redis_poll_ms = 3100
[retention]
enabled = false
dry_run = true
days = 37
at = "23:59"
catch_up = false
batch_size = 41
pause_ms = 43
max_rows_per_run = 47
[queues]
require_noeviction = true
max_redis_memory_ratio = 0.5
shutdown_grace_ms = 53
maintenance_interval_ms = 59
lease_poll_ms = 61
max_waiters = 67
max_in_flight = 71
retry_after_s = 73
max_queues = 79
max_payload_bytes = 83
[queues.defaults]
concurrency = 0
lease_ms = 1009
max_attempts = 89
backoff_ms = 97
max_backoff_ms = 101
max_stalled = 103
max_length = 107
keep_completed = 0
keep_failed = 109
keep_age_s = 113
max_wait_s = 127
circuit_failures = 131
circuit_cooldown_ms = 137
)";

} // namespace

// --- defaults and the shipped file --------------------------------------------------------

TEST_CASE("the built-in defaults pass validation") {
  CHECK_NOTHROW(cfg::validate(cfg::config{}));
}

TEST_CASE("an empty file and no environment give the defaults and a hostname-pid node id") {
  cfg::config c = cfg::load_string("", {});
  cfg::config expected;
  REQUIRE(c.node.id.size() <= 64);
  CHECK_THAT(c.node.id, EndsWith("-" + std::to_string(::getpid())));
  CHECK(
      c.node.id.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789."
                                  "_-") == std::string::npos);
  expected.node.id = c.node.id;
  CHECK(c == expected);
  CHECK(cfg::load("", {}) == expected);
}

TEST_CASE("the shipped config/sessiond.toml loads and holds exactly the defaults") {
  std::string path = source_root() + "config/sessiond.toml";
  cfg::config from_file = cfg::load(path, {});
  cfg::config from_text = cfg::load_string(read_text(path), {});
  cfg::config expected;
  expected.node.id = from_file.node.id;
  // The file ships the cache namespaces of the Node service (test_config_cache checks them).
  CHECK(from_file.cache.namespaces.size() == 5);
  expected.cache.namespaces = from_file.cache.namespaces;
  CHECK(from_file == expected);
  CHECK(from_text == expected);
}

TEST_CASE("the shipped config/sessiond.toml writes out every key with its default") {
  std::string text = read_text(source_root() + "config/sessiond.toml") + "\n[";
  for (const auto& k : cfg::keys()) {
    CAPTURE(k.name);
    auto dot = k.name.rfind('.');
    auto start = text.find("\n[" + k.name.substr(0, dot) + "]\n");
    REQUIRE(start != std::string::npos);
    std::string block = text.substr(start, text.find("\n[", start + 1) - start);
    CHECK_THAT(block, Contains("\n" + k.name.substr(dot + 1) + " = " + k.default_value + "\n"));
  }
}

TEST_CASE("docs/configuration.md documents every key") {
  std::string docs = read_text(source_root() + "docs/configuration.md");
  for (const auto& k : cfg::keys()) {
    CAPTURE(k.name);
    CHECK_THAT(docs, Contains("`" + k.name + "`"));
  }
}

// --- bounds -------------------------------------------------------------------------------

TEST_CASE("every integer key refuses one below its minimum and one above its maximum") {
  for (const auto& row : header_bounds) {
    CAPTURE(row.name);
    std::string allowed = " is out of range (allowed: " + std::to_string(row.min) + ".." +
                          std::to_string(row.max) + ")";
    std::string low = std::to_string(row.min - 1);
    std::string high = std::to_string(row.max + 1);
    CHECK(error_of(toml_setting(row.name, low), row.extra) ==
          refusal(row.name, low, allowed.c_str()));
    CHECK(error_of(toml_setting(row.name, high), row.extra) ==
          refusal(row.name, high, allowed.c_str()));
  }
}

TEST_CASE("every integer key accepts its minimum and its maximum") {
  for (const auto& row : header_bounds) {
    CAPTURE(row.name);
    for (std::int64_t v : {row.min, row.max}) {
      cfg::env_map env = row.extra;
      env[env_name(row.name)] = std::to_string(v);
      CHECK(error_of("", env) == "");
      CHECK(printed(cfg::load_string("", env), row.name) == std::to_string(v));
    }
  }
}

TEST_CASE(
    "redis.wait_timeout_ms must stay below redis.command_timeout_ms once wait_replicas is set") {
  CHECK(error_of("[redis]\nwait_replicas = 1\nwait_timeout_ms = 1000\n")
            .find("redis.wait_timeout_ms = 1000 must be below redis.command_timeout_ms = 1000") !=
        std::string::npos);
  CHECK(error_of("[redis]\nwait_replicas = 1\nwait_timeout_ms = 999\n") == "");
  CHECK(error_of("[redis]\nwait_timeout_ms = 5000\n") == ""); // unused without replicas
}

TEST_CASE("the bounds table of this test covers every integer key") {
  for (const auto& k : cfg::keys()) {
    bool is_integer = k.default_value.find_first_not_of("-0123456789") == std::string::npos;
    if (!is_integer) {
      continue;
    }
    CAPTURE(k.name);
    bool listed = false;
    for (const auto& row : header_bounds) {
      listed = listed || row.name == k.name;
    }
    CHECK(listed);
  }
}

TEST_CASE("auth.protect_metrics without a tokens file is refused: nothing could call /metrics") {
  CHECK(error_of("[auth]\nprotect_metrics = true\n") ==
        "config: auth.protect_metrics = true needs auth.api_tokens_file or auth.admin_tokens_file "
        "(allowed: a tokens file set, or protect_metrics = false)");
  CHECK(error_of("[auth]\nprotect_metrics = true\nadmin_tokens_file = \"/etc/t\"\n") == "");
  CHECK(error_of("", {{"SESSIOND_AUTH_PROTECT_METRICS", "on"},
                      {"SESSIOND_AUTH_API_TOKENS_FILE", "/etc/t"}}) == "");
  auto c = cfg::load_string("", {{"SESSIOND_AUTH_API_TOKENS_FILE", "/etc/sessiond/api"},
                                 {"SESSIOND_AUTH_ADMIN_TOKENS_FILE", "/etc/sessiond/admin"}});
  CHECK(c.auth.api_tokens_file == "/etc/sessiond/api");
  CHECK(c.auth.admin_tokens_file == "/etc/sessiond/admin");
  CHECK(printed(c, "auth.api_tokens_file") == "\"/etc/sessiond/api\""); // paths are shown
}

TEST_CASE("encryption.keys_file comes from the file or SESSIOND_ENCRYPTION_KEYS_FILE and is "
          "printed as a path (the keys stay in the file)") {
  auto c = cfg::load_string("[encryption]\nkeys_file = \"/etc/sessiond/keys\"\n", {});
  CHECK(c.encryption.keys_file == "/etc/sessiond/keys");
  c = cfg::load_string("", {{"SESSIOND_ENCRYPTION_KEYS_FILE", "/run/keys"}});
  CHECK(c.encryption.keys_file == "/run/keys");
  CHECK(printed(c, "encryption.keys_file") == "\"/run/keys\"");
  CHECK(cfg::load_string("", {}).encryption.keys_file.empty()); // default: no encryption
  CHECK(error_of("[encryption]\nrotate_batch = 0\n") ==
        "config: encryption.rotate_batch = 0 is out of range (allowed: 1..100000)");
  CHECK(error_of("[encryption]\nkeys = \"k1:abc\"\n") ==
        R"(config: unknown key "encryption.keys" (in TOML text))");
}

TEST_CASE("validate refuses an out-of-range struct with the key, value and range") {
  cfg::config c;
  c.sessions.ttl_s = 0;
  CHECK_THROWS_WITH(cfg::validate(c),
                    "config: sessions.ttl_s = 0 is out of range (allowed: 1..31536000)");
}

// --- types, unknown keys and sections -----------------------------------------------------

TEST_CASE("a value of the wrong type is refused naming the type expected") {
  CHECK(error_of("[http]\nio_threads = \"two\"") ==
        R"(config: http.io_threads = "two" has the wrong type (expected an integer))");
  CHECK(error_of("[http]\nio_threads = 2.5") ==
        "config: http.io_threads = 2.5 has the wrong type (expected an integer)");
  CHECK(error_of("[metrics]\nenabled = \"yes\"") ==
        R"(config: metrics.enabled = "yes" has the wrong type (expected a boolean))");
  CHECK(error_of("[redis]\nurl = 6379") ==
        "config: redis.url = 6379 has the wrong type (expected a string)");
  CHECK(error_of("[redis]\nurl = [\"redis://a\"]") ==
        "config: redis.url = [...] has the wrong type (expected a string)");
  CHECK(error_of("http = 5") == "config: http = 5 has the wrong type (expected a table)");
}

TEST_CASE("an unknown key in the file is refused with its full name and the file") {
  CHECK(error_of("[http]\niothreads = 2") ==
        R"(config: unknown key "http.iothreads" (in TOML text))");
  CHECK(error_of("io_threads = 2") == R"(config: unknown key "io_threads" (in TOML text))");
  CHECK(error_of("[http.tls]\ncert = \"x\"") == R"(config: unknown key "http.tls" (in TOML text))");
  temp_file file("[http]\niothreads = 2\n");
  CHECK_THROWS_WITH(cfg::load(file.path, {}),
                    "config: unknown key \"http.iothreads\" (in file " + file.path + ")");
}

TEST_CASE("an unknown section in the file is refused with its name") {
  CHECK(error_of("[htpp]\nio_threads = 2") == R"(config: unknown section "htpp" (in TOML text))");
}

TEST_CASE("a TOML syntax error names the file, the line and the column") {
  temp_file file("[http]\nio_threads = = 2\n");
  std::string message;
  try {
    cfg::load(file.path, {});
  } catch (const cfg::config_error& e) {
    message = e.what();
  }
  CHECK_THAT(message,
             StartsWith("config: syntax error in file " + file.path + " at line 2, column 14: "));
  CHECK(message.find('\n') == std::string::npos);
  CHECK_THAT(error_of("[http]\n\nio_threads = 2\n[http]\n"),
             StartsWith("config: syntax error in TOML text at line 4, column "));
}

TEST_CASE("a missing config file is refused naming its path") {
  CHECK_THROWS_WITH(cfg::load("/nonexistent/sessiond.toml", {}),
                    R"(config: cannot read config file "/nonexistent/sessiond.toml": )"
                    "No such file or directory");
}

// --- string rules -------------------------------------------------------------------------

TEST_CASE("an enumerated key refuses a value outside its list, naming the list") {
  CHECK(error_of("[sessions]\nmode = \"fast\"") ==
        R"(config: sessions.mode = "fast" is invalid )"
        "(allowed: postgres, shadow, redis-read, redis-primary)");
  CHECK(error_of("[sessions]\nmixed_modes = \"allow\"") ==
        R"(config: sessions.mixed_modes = "allow" is invalid (allowed: refuse, warn))");
  CHECK(error_of("[sessions]\non_redis_down = \"retry\"") ==
        R"(config: sessions.on_redis_down = "retry" is invalid (allowed: postgres, reject))");
  CHECK(error_of("[node]\nlog_level = \"INFO\"") ==
        R"(config: node.log_level = "INFO" is invalid (allowed: error, warn, info, debug))");
  for (const char* mode : {"postgres", "shadow", "redis-read", "redis-primary"}) {
    CHECK(cfg::load_string(toml_setting("sessions.mode", "\"" + std::string(mode) + "\""), {})
              .sessions.mode == mode);
  }
}

TEST_CASE("http.listen must be host:port with a port from 0 to 65535") {
  for (const char* bad : {"localhost", "localhost:", ":8080", "host:65536", "host:-1", "host:80x",
                          "::1:8080", "[]:80", "a b:80", "host:123456"}) {
    CAPTURE(bad);
    CHECK(
        error_of(toml_setting("http.listen", quoted(bad))) ==
        refusal("http.listen", quoted(bad), " is invalid (allowed: host:port with port 0..65535)"));
  }
  for (const char* good : {"0.0.0.0:0", "localhost:65535", "[::1]:8080", "api.example.com:80"}) {
    CAPTURE(good);
    CHECK(cfg::load_string(toml_setting("http.listen", quoted(good)), {}).http.listen == good);
  }
}

TEST_CASE("retention.at must be HH:MM between 00:00 and 23:59") {
  for (const char* bad : {"24:00", "12:60", "3:30", "03:30:00", "ab:cd", "0330", ""}) {
    CAPTURE(bad);
    CHECK(error_of(toml_setting("retention.at", quoted(bad))) ==
          refusal("retention.at", quoted(bad), " is invalid (allowed: HH:MM from 00:00 to 23:59)"));
  }
  for (const char* good : {"00:00", "23:59", "12:05"}) {
    CHECK(cfg::load_string(toml_setting("retention.at", quoted(good)), {}).retention.at == good);
  }
}

TEST_CASE("the URLs must use the redis:// and postgresql:// or postgres:// schemes") {
  CHECK(error_of("[redis]\nurl = \"http://127.0.0.1:6379\"") ==
        R"(config: redis.url = "http://127.0.0.1:6379" is invalid )"
        "(allowed: a redis:// or rediss:// (TLS) URL without spaces)");
  CHECK(cfg::load_string("[redis]\nurl = \"rediss://cache:6380/0\"", {}).redis.url ==
        "rediss://cache:6380/0");
  CHECK(error_of("[postgres]\nurl = \"mysql://db/s\"") ==
        R"(config: postgres.url = "mysql://db/s" is invalid )"
        "(allowed: a postgresql:// or postgres:// URL without spaces)");
  CHECK_THAT(error_of("[redis]\nurl = \"redis://host :6379\""), Contains("is invalid"));
  CHECK(cfg::load_string("[postgres]\nurl = \"postgres://db/s\"", {}).postgres.url ==
        "postgres://db/s");
  CHECK(cfg::load_string("[postgres]\nurl = \"postgresql://db/s\"", {}).postgres.url ==
        "postgresql://db/s");
}

TEST_CASE("an invalid URL is printed in the error with its password masked") {
  std::string message = error_of("[redis]\nurl = \"http://:s3cret@cache:6379\"");
  CHECK_THAT(message, Contains(R"(redis.url = "http://:****@cache:6379" is invalid)"));
  CHECK_THAT(message, !Contains("s3cret"));
}

TEST_CASE("redis.key_prefix is 1 to 64 characters of [A-Za-z0-9:_.-]") {
  const char* allowed = " is invalid (allowed: 1-64 characters of [A-Za-z0-9:_.-])";
  for (const std::string& bad :
       {std::string(), std::string(65, 'a'), std::string("a b"), std::string("app/")}) {
    CAPTURE(bad);
    CHECK(error_of(toml_setting("redis.key_prefix", quoted(bad))) ==
          refusal("redis.key_prefix", quoted(bad), allowed));
  }
  for (const std::string& good : {std::string(64, 'z'), std::string("app:sess_1.-")}) {
    CHECK(cfg::load_string(toml_setting("redis.key_prefix", quoted(good)), {}).redis.key_prefix ==
          good);
  }
}

TEST_CASE("node.id when set is 1 to 64 characters of [A-Za-z0-9._-]") {
  const char* allowed =
      " is invalid (allowed: empty (<hostname>-<pid>) or 1-64 characters of [A-Za-z0-9._-])";
  for (const std::string& bad : {std::string(65, 'n'), std::string("a/b"), std::string("a:b")}) {
    CAPTURE(bad);
    CHECK(error_of(toml_setting("node.id", quoted(bad))) ==
          refusal("node.id", quoted(bad), allowed));
  }
  CHECK(cfg::load_string("[node]\nid = \"web-1.eu_west\"", {}).node.id == "web-1.eu_west");
}

TEST_CASE("an error message stays on one line even for a value holding a newline") {
  std::string message = error_of("[sessions]\nmode = \"fa\\nst\"");
  CHECK_THAT(message, StartsWith(R"(config: sessions.mode = "fa\nst" is invalid)"));
  CHECK(message.find('\n') == std::string::npos);
}

// --- cross-key rules ----------------------------------------------------------------------

TEST_CASE("sessions.touch_interval_s may not exceed sessions.ttl_s") {
  CHECK(error_of("[sessions]\nttl_s = 30") ==
        "config: sessions.touch_interval_s = 60 is out of range "
        "(allowed: <= sessions.ttl_s = 30)");
  CHECK(cfg::load_string("[sessions]\nttl_s = 60", {}).sessions.touch_interval_s == 60);
}

TEST_CASE("sessions.max_lifetime_s may not be shorter than sessions.ttl_s") {
  CHECK(error_of("[sessions]\nmax_lifetime_s = 100") ==
        "config: sessions.max_lifetime_s = 100 is out of range "
        "(allowed: >= sessions.ttl_s = 3600)");
  CHECK(cfg::load_string("[sessions]\nmax_lifetime_s = 3600", {}).sessions.max_lifetime_s == 3600);
}

TEST_CASE("redis.reconnect_max_ms may not be below redis.reconnect_min_ms") {
  CHECK(error_of("[redis]\nreconnect_max_ms = 50") ==
        "config: redis.reconnect_max_ms = 50 is out of range "
        "(allowed: >= redis.reconnect_min_ms = 100)");
  CHECK(cfg::load_string("[redis]\nreconnect_max_ms = 100", {}).redis.reconnect_max_ms == 100);
}

TEST_CASE("redis.tls_cert_file and redis.tls_key_file are set together or not at all") {
  CHECK(error_of("[redis]\ntls_cert_file = \"/etc/ssl/node.pem\"") ==
        "config: redis.tls_cert_file is set without redis.tls_key_file (allowed: both or neither)");
  CHECK(error_of("", {{"SESSIOND_REDIS_TLS_KEY_FILE", "/etc/ssl/node.key"}}) ==
        "config: redis.tls_key_file is set without redis.tls_cert_file "
        "(allowed: both or neither; set by SESSIOND_REDIS_TLS_KEY_FILE)");
  auto c = cfg::load_string(
      "[redis]\ntls_cert_file = \"/etc/ssl/node.pem\"\ntls_key_file = \"/etc/ssl/node.key\"", {});
  CHECK(c.redis.tls_cert_file == "/etc/ssl/node.pem");
  CHECK(c.redis.tls_key_file == "/etc/ssl/node.key");
}

// --- environment --------------------------------------------------------------------------

TEST_CASE("SESSIOND_<SECTION>_<KEY> variables beat the file") {
  cfg::env_map env = {{"SESSIOND_HTTP_IO_THREADS", "8"},
                      {"SESSIOND_REDIS_URL", "redis://other:6379/1"},
                      {"SESSIOND_METRICS_ENABLED", "off"}};
  cfg::config c = cfg::load_string(
      "[http]\nio_threads = 4\n[redis]\nurl = \"redis://file:6379/0\"\n[metrics]\nenabled = true",
      env);
  CHECK(c.http.io_threads == 8);
  CHECK(c.redis.url == "redis://other:6379/1");
  CHECK_FALSE(c.metrics.enabled);
}

TEST_CASE("every key can be set through its SESSIOND_ variable") {
  for (const auto& k : cfg::keys()) {
    CAPTURE(k.env);
    CHECK(k.env == "SESSIOND_" + [&] {
      std::string upper;
      for (char ch : k.name) {
        upper += ch == '.' ? '_' : static_cast<char>(std::toupper(ch));
      }
      return upper;
    }());
    cfg::config c = cfg::load_string("", {{k.env, unquoted(k.default_value)}});
    if (k.name != "node.id") {
      CHECK(printed(c, k.name) == k.default_value);
    }
  }
}

TEST_CASE("each legacy variable of the Node service sets its key") {
  auto mode = [](const char* value) {
    return cfg::load_string("[sessions]\nmode = \"shadow\"", {{"USE_REDIS_ONLY_SESSIONS", value}})
        .sessions.mode;
  };
  CHECK(mode("true") == "redis-primary");
  CHECK(mode("false") == "postgres");
  CHECK(cfg::load_string("", {{"SESSION_SYNC_INTERVAL", "1500"}}).sync.interval_ms == 1500);
  CHECK(
      cfg::load_string("[sessions]\nttl_s = 100\ntouch_interval_s = 10", {{"SESSION_TTL", "7200"}})
          .sessions.ttl_s == 7200);
  CHECK(cfg::load_string("", {{"TENANT_CACHE_TTL", "60"}}).cache.tenant_ttl_s == 60);
  CHECK_FALSE(cfg::load_string("", {{"SESSION_METRICS_ENABLED", "false"}}).metrics.enabled);
}

TEST_CASE("a SESSIOND_ variable beats the legacy variable for the same key") {
  cfg::config c = cfg::load_string("", {{"SESSION_TTL", "7200"},
                                        {"SESSIOND_SESSIONS_TTL_S", "900"},
                                        {"USE_REDIS_ONLY_SESSIONS", "false"},
                                        {"SESSIOND_SESSIONS_MODE", "shadow"},
                                        {"SESSION_METRICS_ENABLED", "false"},
                                        {"SESSIOND_METRICS_ENABLED", "true"}});
  CHECK(c.sessions.ttl_s == 900);
  CHECK(c.sessions.mode == "shadow");
  CHECK(c.metrics.enabled);
}

TEST_CASE("booleans from the environment accept true/false, 1/0, yes/no and on/off") {
  for (const char* yes : {"true", "TRUE", "1", "yes", "Yes", "on", "ON"}) {
    CAPTURE(yes);
    CHECK(cfg::load_string("", {{"SESSIOND_RETENTION_DRY_RUN", yes}}).retention.dry_run);
  }
  for (const char* no : {"false", "False", "0", "no", "NO", "off", "Off"}) {
    CAPTURE(no);
    CHECK_FALSE(cfg::load_string("", {{"SESSIOND_RETENTION_ENABLED", no}}).retention.enabled);
  }
}

TEST_CASE("an environment value that does not parse is refused naming the variable") {
  CHECK(error_of("", {{"SESSIOND_HTTP_IO_THREADS", "x"}}) ==
        R"(config: SESSIOND_HTTP_IO_THREADS = "x" is not an integer (allowed: 1..256))");
  for (const char* bad : {"", " 2", "2.0", "2s", "0x10"}) {
    CAPTURE(bad);
    CHECK_THAT(error_of("", {{"SESSIOND_HTTP_IO_THREADS", bad}}),
               StartsWith(refusal("SESSIOND_HTTP_IO_THREADS", quoted(bad), " is not an integer")));
  }
  CHECK(error_of("", {{"SESSIOND_HTTP_IO_THREADS", "99999999999999999999"}}) ==
        R"(config: SESSIOND_HTTP_IO_THREADS = "99999999999999999999" is out of range )"
        "(allowed: 1..256)");
  CHECK(error_of("", {{"SESSIOND_METRICS_ENABLED", "maybe"}}) ==
        R"(config: SESSIOND_METRICS_ENABLED = "maybe" is not a boolean )"
        "(allowed: true, false, 1, 0, yes, no, on, off)");
  CHECK(error_of("", {{"USE_REDIS_ONLY_SESSIONS", "maybe"}}) ==
        R"(config: USE_REDIS_ONLY_SESSIONS = "maybe" is not a boolean )"
        "(allowed: true, false, 1, 0, yes, no, on, off)");
  CHECK(error_of("", {{"SESSION_TTL", "1h"}}) ==
        R"(config: SESSION_TTL = "1h" is not an integer (allowed: 1..31536000))");
}

TEST_CASE("an out-of-range value from the environment names the variable that set it") {
  CHECK(error_of("", {{"SESSION_TTL", "0"}}) ==
        "config: sessions.ttl_s = 0 is out of range (allowed: 1..31536000; set by SESSION_TTL)");
  CHECK(error_of("", {{"SESSIOND_SESSIONS_MODE", "fast"}}) ==
        R"(config: sessions.mode = "fast" is invalid )"
        "(allowed: postgres, shadow, redis-read, redis-primary; set by SESSIOND_SESSIONS_MODE)");
}

TEST_CASE(
    "an unknown key in a known section's SESSIOND_ variable is refused, tooling ones are not") {
  CHECK_THAT(error_of("", {{"SESSIOND_HTTP_IOTHREADS", "2"}}),
             StartsWith(R"(config: unknown environment variable "SESSIOND_HTTP_IOTHREADS")"));
  CHECK_THAT(error_of("", {{"SESSIOND_SESSIONS_TTL", "2"}}),
             StartsWith(R"(config: unknown environment variable "SESSIOND_SESSIONS_TTL")"));
  CHECK(error_of("", {{"SESSIOND_CONFIG", "/etc/sessiond.toml"},
                      {"SESSIOND_ROOT", "/src"},
                      {"SESSIOND_SERVICES_DIR", "/tmp/x"},
                      {"SESSIOND_", "2"},
                      {"PATH", "/usr/bin"},
                      {"sessiond_http_io_threads", "x"}}) == "");
}

TEST_CASE("process_env reads the variables of this process") {
  REQUIRE(::setenv("SESSIOND_TEST_PROCESS_ENV", "a=b", 1) == 0);
  cfg::env_map env = cfg::process_env();
  ::unsetenv("SESSIOND_TEST_PROCESS_ENV");
  CHECK(env["SESSIOND_TEST_PROCESS_ENV"] == "a=b");
}

// --- to_toml ------------------------------------------------------------------------------

TEST_CASE("to_toml masks the password of both URLs and leaves the rest unchanged") {
  cfg::config c;
  c.redis.url = "redis://:s3cret@cache.internal:6379/0";
  c.postgres.url = "postgresql://app:pa55@db.internal/sessiond";
  std::string text = cfg::to_toml(c);
  CHECK_THAT(text, Contains(R"(url = "redis://:****@cache.internal:6379/0")"));
  CHECK_THAT(text, Contains(R"(url = "postgresql://app:****@db.internal/sessiond")"));
  CHECK_THAT(text, !Contains("s3cret"));
  CHECK_THAT(text, !Contains("pa55"));
}

TEST_CASE("to_toml masks a password given as a query parameter or holding an @") {
  cfg::config c;
  c.postgres.url = "postgres://app@db/s?sslmode=require&password=pa55&connect_timeout=3";
  c.redis.url = "redis://user:p@ss@cache:6379";
  std::string text = cfg::to_toml(c);
  CHECK_THAT(text, Contains("postgres://app@db/s?sslmode=require&password=****&connect_timeout=3"));
  CHECK_THAT(text, Contains("redis://user:****@cache:6379"));
  CHECK_THAT(text, !Contains("pa55"));
  CHECK_THAT(text, !Contains("p@ss"));
}

TEST_CASE("to_toml masks every seed of a Redis Cluster URL list, keeping their hosts") {
  cfg::config c;
  c.redis.url = "redis://:s3cret@node-a:7000,redis://:s3cret@node-b:7001";
  std::string text = cfg::to_toml(c);
  CHECK_THAT(text, Contains(R"(url = "redis://:****@node-a:7000,redis://:****@node-b:7001")"));
  CHECK_THAT(text, !Contains("s3cret"));
}

TEST_CASE("to_toml leaves URLs without a password unchanged") {
  cfg::config c;
  c.redis.url = "redis://user@cache:6379/0";
  CHECK(printed(c, "redis.url") == R"("redis://user@cache:6379/0")");
  CHECK(printed(c, "postgres.url") == R"("postgresql://postgres@127.0.0.1:5432/sessiond")");
}

TEST_CASE("to_toml output loads back into an equal config") {
  cfg::config c = cfg::load_string(every_key_changed, {});
  cfg::config defaults;
  for (const auto& k : cfg::keys()) { // the round trip below then covers every key
    CAPTURE(k.name);
    CHECK(printed(c, k.name) != k.default_value);
  }
  cfg::config again = cfg::load_string(cfg::to_toml(c), {});
  CHECK(again == c);
  CHECK(cfg::to_toml(again) == cfg::to_toml(c));
  CHECK(again != defaults);
}

TEST_CASE("a masked to_toml output still loads, with the password as ****") {
  cfg::config c = cfg::load_string("", {{"SESSIOND_REDIS_URL", "redis://:s3cret@cache:6379/0"}});
  cfg::config again = cfg::load_string(cfg::to_toml(c), {});
  CHECK(again.redis.url == "redis://:****@cache:6379/0");
  again.redis.url = c.redis.url;
  CHECK(again == c);
}

TEST_CASE("non-ASCII configuration text is refused with its position, a UTF-8 BOM is allowed") {
  CHECK_THAT(error_of("[http]\n\xC3\xA9 = 1\n", {}),
             Catch::Matchers::Contains("line 2, column 1") &&
                 Catch::Matchers::Contains("only ASCII"));
  CHECK(error_of("\xEF\xBB\xBF[http]\nio_threads = 2\n", {}) == "");
}

TEST_CASE("postgres.schema must be a plain lower-case identifier") {
  CHECK(cfg::load_string("[postgres]\nschema = \"tenant_7\"\n", {}).postgres.schema == "tenant_7");
  for (const char* bad : {"", "7up", "Public", "a-b", "a;drop", "x\\\"y"}) {
    CAPTURE(bad);
    CHECK_THROWS_AS(cfg::load_string(std::string("[postgres]\nschema = \"") + bad + "\"\n", {}),
                    cfg::config_error);
  }
}
