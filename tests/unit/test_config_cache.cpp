// Unit tests of the cache's configuration (config/cache.cpp): the [cache] keys and
// redis.cache_url, the [cache.namespaces.<name>] tables with every error's exact line, the tenant
// TTL's legacy variable, the loader checks, the environment, to_toml and the shipped file.
#include "config/config.hpp"

#include <catch2/catch.hpp>

#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace cfg = sessiond::config;
using Catch::Matchers::Contains;

namespace {

/// The repository root, from this file's own path (the test may run from any directory).
std::string source_root() {
  std::string file = __FILE__;
  return file.substr(0, file.rfind("tests/unit/test_config_cache.cpp"));
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

/// The message load_string throws, or "" when it loads.
std::string error_of(const std::string& text, const cfg::env_map& env = {}) {
  try {
    cfg::load_string(text, env);
  } catch (const cfg::config_error& e) {
    return e.what();
  }
  return "";
}

cfg::config load(const std::string& text, const cfg::env_map& env = {}) {
  return cfg::load_string(text, env);
}

/// [cache.namespaces.user] with one line.
std::string user_ns(const std::string& line) {
  return "[cache.namespaces.user]\n" + line + "\n";
}

/// The bounds written in config.hpp, copied by hand so that a slip in cache.cpp is caught.
struct bounds {
  std::string key;
  std::int64_t min;
  std::int64_t max;
};

const std::vector<bounds> cache_bounds = {
    {"tenant_ttl_s", 1, 31536000}, {"max_value_bytes", 2, 67108864}, {"max_ttl_s", 1, 31536000},
    {"max_waiters", 1, 1000000},   {"max_loads", 1, 100000},         {"lock_ms", 100, 600000},
    {"lock_poll_ms", 1, 10000},    {"invalidate_batch", 10, 100000}, {"retry_after_s", 1, 3600},
};

const std::vector<bounds> namespace_bounds = {
    {"ttl_s", 1, 31536000},         {"negative_ttl_s", 0, 86400},
    {"stale_if_error_s", 0, 86400}, {"near_cache_entries", 0, 10000000},
    {"near_ttl_ms", 1, 3600000},
};

/// Every [cache] key and every namespace key away from its default, two namespaces (one that
/// needs quotes), the tenant's TTL from cache.tenant_ttl_s and a password in redis.cache_url.
const std::string cache_example = R"(
[redis]
cache_url = "rediss://:s3cret@cache.internal:6380/3"
[cache]
tenant_ttl_s = 120
enabled = false
max_value_bytes = 4096
max_ttl_s = 86400
max_waiters = 50
max_loads = 8
lock_ms = 2000
lock_poll_ms = 5
max_redis_memory_ratio = 0.65
invalidate_batch = 250
retry_after_s = 3
[cache.namespaces.user]
ttl_s = 900
jitter_ratio = 0.25
negative_ttl_s = 0
stale_if_error_s = 60
loader = "SELECT row_to_json(u) FROM users u WHERE provider || ':' || uid = $1"
warm = "SELECT provider || ':' || uid, row_to_json(u) FROM users u WHERE active"
near_cache_entries = 0
near_ttl_ms = 250
early_refresh_beta = 2
[cache.namespaces."rooms.v2"]
early_refresh_beta = 0.0
[cache.namespaces.tenant]
)";

} // namespace

// --- defaults -----------------------------------------------------------------------------

TEST_CASE("the cache settings default to the values config.hpp documents") {
  const cfg::config c = load("");
  const cfg::cache_section& k = c.cache;
  CHECK(c.redis.cache_url.empty());
  CHECK(k.tenant_ttl_s == 3600);
  CHECK(k.enabled);
  CHECK(k.max_value_bytes == 1048576);
  CHECK(k.max_ttl_s == 2592000);
  CHECK(k.max_waiters == 10000);
  CHECK(k.max_loads == 256);
  CHECK(k.lock_ms == 5000);
  CHECK(k.lock_poll_ms == 20);
  CHECK(k.max_redis_memory_ratio == 0.8);
  CHECK(k.invalidate_batch == 1000);
  CHECK(k.retry_after_s == 1);
  CHECK(k.namespaces.empty());
}

TEST_CASE("an empty namespace table takes every namespace default") {
  auto c = load("[cache.namespaces.user]\n"); // ns points into it
  const cfg::cache_namespace& ns = c.cache.namespaces.at("user");
  CHECK(ns.ttl_s == 300);
  CHECK(ns.jitter_ratio == 0.1);
  CHECK(ns.negative_ttl_s == 30);
  CHECK(ns.stale_if_error_s == 300);
  CHECK(ns.loader.empty());
  CHECK(ns.warm.empty());
  CHECK(ns.near_cache_entries == 10000);
  CHECK(ns.near_ttl_ms == 1000);
  CHECK(ns.early_refresh_beta == 1.0);
}

TEST_CASE("keys() lists every [cache] key with its variable, default and bounds") {
  std::vector<std::string> names;
  for (const auto& k : cfg::keys()) {
    if (k.name.rfind("cache.", 0) == 0) {
      names.push_back(k.name);
    }
    if (k.name == "cache.max_loads") {
      CHECK(k.env == "SESSIOND_CACHE_MAX_LOADS");
      CHECK(k.default_value == "256");
      CHECK(k.allowed == "1..100000");
    }
    if (k.name == "cache.max_redis_memory_ratio") {
      CHECK(k.default_value == "0.8");
      CHECK(k.allowed == "more than 0, at most 1");
    }
    if (k.name == "redis.cache_url") {
      CHECK(k.env == "SESSIOND_REDIS_CACHE_URL");
      CHECK(k.default_value == "\"\"");
    }
  }
  CHECK(names == std::vector<std::string>{"cache.tenant_ttl_s", "cache.enabled",
                                          "cache.max_value_bytes", "cache.max_ttl_s",
                                          "cache.max_waiters", "cache.max_loads", "cache.lock_ms",
                                          "cache.lock_poll_ms", "cache.max_redis_memory_ratio",
                                          "cache.invalidate_batch", "cache.retry_after_s"});
}

// --- [cache] keys and redis.cache_url -----------------------------------------------------

TEST_CASE("every [cache] integer key refuses a value past its bounds, naming the key") {
  for (const auto& b : cache_bounds) {
    CAPTURE(b.key);
    std::string allowed =
        " is out of range (allowed: " + std::to_string(b.min) + ".." + std::to_string(b.max) + ")";
    for (std::int64_t bad : {b.min - 1, b.max + 1}) {
      std::string v = std::to_string(bad);
      CHECK(error_of("[cache]\n" + b.key + " = " + v) ==
            "config: cache." + b.key + " = " + v + allowed);
    }
    for (std::int64_t good : {b.min, b.max}) {
      CHECK(error_of("[cache]\n" + b.key + " = " + std::to_string(good)) == "");
    }
  }
}

TEST_CASE("cache.max_redis_memory_ratio is more than 0 and at most 1") {
  const char* allowed = " is out of range (allowed: more than 0, at most 1)";
  CHECK(error_of("[cache]\nmax_redis_memory_ratio = 0") ==
        std::string("config: cache.max_redis_memory_ratio = 0.0") + allowed);
  CHECK(error_of("[cache]\nmax_redis_memory_ratio = 1.01") ==
        std::string("config: cache.max_redis_memory_ratio = 1.01") + allowed);
  CHECK(load("[cache]\nmax_redis_memory_ratio = 1").cache.max_redis_memory_ratio == 1.0);
  CHECK(load("[cache]\nmax_redis_memory_ratio = 0.001").cache.max_redis_memory_ratio == 0.001);
}

TEST_CASE("a [cache] value of the wrong type or an unknown [cache] key is refused") {
  CHECK(error_of("[cache]\nenabled = \"no\"") ==
        R"(config: cache.enabled = "no" has the wrong type (expected a boolean))");
  CHECK(error_of("[cache]\nmax_loads = 2.5") ==
        "config: cache.max_loads = 2.5 has the wrong type (expected an integer)");
  CHECK(error_of("[cache]\nmax_load = 2") ==
        R"(config: unknown key "cache.max_load" (in TOML text))");
  CHECK(error_of("[cache]\nnamespaces = 5") ==
        "config: cache.namespaces = 5 has the wrong type (expected a table)");
  CHECK(error_of("[cache.namespaces]\nuser = 5") ==
        "config: cache.namespaces.user = 5 has the wrong type (expected a table)");
}

TEST_CASE("redis.cache_url is empty or a redis:// or rediss:// URL, its password masked") {
  CHECK(error_of("[redis]\ncache_url = \"http://:pw@cache:6379\"") ==
        R"(config: redis.cache_url = "http://:****@cache:6379" is invalid )"
        "(allowed: empty (redis.url) or a redis:// or rediss:// (TLS) URL without spaces)");
  CHECK(load("[redis]\ncache_url = \"redis://cache:6379/1\"").redis.cache_url ==
        "redis://cache:6379/1");
  CHECK(load("[redis]\ncache_url = \"rediss://cache:6380/0\"").redis.cache_url ==
        "rediss://cache:6380/0");
}

// --- the environment ----------------------------------------------------------------------

TEST_CASE("SESSIOND_CACHE_ and SESSIOND_REDIS_CACHE_URL variables beat the file") {
  cfg::config c = load("[cache]\nmax_loads = 5\nenabled = true\n",
                       {{"SESSIOND_CACHE_MAX_LOADS", "9"},
                        {"SESSIOND_CACHE_ENABLED", "off"},
                        {"SESSIOND_CACHE_MAX_REDIS_MEMORY_RATIO", "0.5"},
                        {"SESSIOND_REDIS_CACHE_URL", "redis://:pw@cache:6379/2"}});
  CHECK(c.cache.max_loads == 9);
  CHECK_FALSE(c.cache.enabled);
  CHECK(c.cache.max_redis_memory_ratio == 0.5);
  CHECK(c.redis.cache_url == "redis://:pw@cache:6379/2");
}

TEST_CASE("an out-of-range [cache] value from the environment names its variable") {
  CHECK(error_of("", {{"SESSIOND_CACHE_LOCK_MS", "99"}}) ==
        "config: cache.lock_ms = 99 is out of range (allowed: 100..600000; set by "
        "SESSIOND_CACHE_LOCK_MS)");
  CHECK(error_of("", {{"SESSIOND_CACHE_MAX_TTL_S", "1d"}}) ==
        R"(config: SESSIOND_CACHE_MAX_TTL_S = "1d" is not an integer (allowed: 1..31536000))");
}

TEST_CASE("namespaces cannot be set from the environment") {
  for (const char* var : {"SESSIOND_CACHE_NAMESPACES_USER_TTL_S", "SESSIOND_CACHE_NAMESPACES"}) {
    CAPTURE(var);
    CHECK(error_of("[cache.namespaces.user]\n", {{var, "1"}}) ==
          std::string("config: unknown environment variable \"") + var +
              "\" (allowed: SESSIOND_<SECTION>_<KEY> of a key in docs/configuration.md)");
  }
}

// --- namespace tables ---------------------------------------------------------------------

TEST_CASE("a namespace table reads every key") {
  cfg::config c = load(cache_example);
  REQUIRE(c.cache.namespaces.size() == 3);
  const cfg::cache_namespace& user = c.cache.namespaces.at("user");
  CHECK(user.ttl_s == 900);
  CHECK(user.jitter_ratio == 0.25);
  CHECK(user.negative_ttl_s == 0);
  CHECK(user.stale_if_error_s == 60);
  CHECK(user.loader == "SELECT row_to_json(u) FROM users u WHERE provider || ':' || uid = $1");
  CHECK(user.warm == "SELECT provider || ':' || uid, row_to_json(u) FROM users u WHERE active");
  CHECK(user.near_cache_entries == 0);
  CHECK(user.near_ttl_ms == 250);
  CHECK(user.early_refresh_beta == 2.0);
  CHECK(c.cache.namespaces.at("rooms.v2").early_refresh_beta == 0.0);
  CHECK(c.cache.namespaces.at("rooms.v2").ttl_s == 300);
}

TEST_CASE("every namespace integer key refuses a value past its bounds, naming the full key") {
  for (const auto& b : namespace_bounds) {
    CAPTURE(b.key);
    std::string allowed =
        " is out of range (allowed: " + std::to_string(b.min) + ".." + std::to_string(b.max) + ")";
    for (std::int64_t bad : {b.min - 1, b.max + 1}) {
      std::string v = std::to_string(bad);
      CHECK(error_of(user_ns(b.key + " = " + v)) ==
            "config: cache.namespaces.user." + b.key + " = " + v + allowed);
    }
    for (std::int64_t good : {b.min, b.max}) {
      CHECK(error_of(user_ns(b.key + " = " + std::to_string(good))) == "");
    }
  }
}

TEST_CASE("jitter_ratio is 0 to 0.5 and early_refresh_beta 0 to 10, both ends included") {
  CHECK(error_of(user_ns("jitter_ratio = 0.51")) ==
        "config: cache.namespaces.user.jitter_ratio = 0.51 is out of range "
        "(allowed: at least 0, at most 0.5)");
  CHECK(error_of(user_ns("jitter_ratio = -0.1")) ==
        "config: cache.namespaces.user.jitter_ratio = -0.1 is out of range "
        "(allowed: at least 0, at most 0.5)");
  CHECK(error_of(user_ns("early_refresh_beta = 10.5")) ==
        "config: cache.namespaces.user.early_refresh_beta = 10.5 is out of range "
        "(allowed: at least 0, at most 10)");
  CHECK(error_of(user_ns("early_refresh_beta = nan")) ==
        "config: cache.namespaces.user.early_refresh_beta = nan is out of range "
        "(allowed: at least 0, at most 10)");
  CHECK(error_of(user_ns("early_refresh_beta = inf")) ==
        "config: cache.namespaces.user.early_refresh_beta = inf is out of range "
        "(allowed: at least 0, at most 10)");
  for (const char* good : {"jitter_ratio = 0", "jitter_ratio = 0.5", "early_refresh_beta = 0",
                           "early_refresh_beta = 10"}) {
    CAPTURE(good);
    CHECK(error_of(user_ns(good)) == "");
  }
}

TEST_CASE("a namespace value of the wrong type is refused naming the type expected") {
  CHECK(error_of(user_ns("ttl_s = \"15m\"")) ==
        R"(config: cache.namespaces.user.ttl_s = "15m" has the wrong type (expected an integer))");
  CHECK(error_of(user_ns("ttl_s = 900.0")) ==
        "config: cache.namespaces.user.ttl_s = 900.0 has the wrong type (expected an integer)");
  CHECK(error_of(user_ns("jitter_ratio = \"0.1\"")) ==
        R"(config: cache.namespaces.user.jitter_ratio = "0.1" has the wrong type )"
        "(expected a number)");
  CHECK(error_of(user_ns("loader = 1")) ==
        "config: cache.namespaces.user.loader = 1 has the wrong type (expected a string)");
  CHECK(error_of(user_ns("warm = [\"SELECT 1\"]")) ==
        "config: cache.namespaces.user.warm = [...] has the wrong type (expected a string)");
}

TEST_CASE("an unknown key in a namespace table is refused with its full name") {
  CHECK(error_of(user_ns("ttl = 900")) ==
        R"(config: unknown key "cache.namespaces.user.ttl" (in TOML text))");
  CHECK(error_of("[cache.namespaces.user.near]\nentries = 5") ==
        R"(config: unknown key "cache.namespaces.user.near" (in TOML text))");
  CHECK(error_of("[cache.namespaces.\"a.b\"]\n\"ttl.s\" = 5") ==
        R"(config: unknown key "cache.namespaces.\"a.b\".\"ttl.s\"" (in TOML text))");
}

TEST_CASE("a namespace name outside [A-Za-z0-9._-]{1,64} is refused") {
  const std::string allowed = " has an invalid namespace name (allowed: 1-64 characters of "
                              "[A-Za-z0-9._-])";
  CHECK(error_of("[cache.namespaces.\"user:v2\"]\n") ==
        "config: cache.namespaces.\"user:v2\"" + allowed);
  CHECK(error_of("[cache.namespaces.\"a b\"]\n") == "config: cache.namespaces.\"a b\"" + allowed);
  CHECK(error_of("[cache.namespaces.\"\"]\n") == "config: cache.namespaces.\"\"" + allowed);
  CHECK(error_of("[cache.namespaces." + std::string(65, 'n') + "]\n") ==
        "config: cache.namespaces." + std::string(65, 'n') + allowed);
  CHECK(error_of("[cache.namespaces." + std::string(64, 'n') + "]\n") == "");
  CHECK(
      load("[cache.namespaces.\"user.v2\"]\n[cache.namespaces.a-b_C9]\n").cache.namespaces.size() ==
      2);
}

TEST_CASE("validate refuses a namespace struct with a bad name or value") {
  cfg::config c;
  c.cache.namespaces["a/b"] = cfg::cache_namespace{};
  CHECK_THROWS_WITH(cfg::validate(c), "config: cache.namespaces.\"a/b\" has an invalid namespace "
                                      "name (allowed: 1-64 characters of [A-Za-z0-9._-])");
  c.cache.namespaces.clear();
  c.cache.namespaces["user"].near_ttl_ms = 0;
  CHECK_THROWS_WITH(cfg::validate(c), "config: cache.namespaces.user.near_ttl_ms = 0 is out of "
                                      "range (allowed: 1..3600000)");
}

TEST_CASE("more than 1000 namespace tables are refused") {
  std::string text;
  for (int i = 0; i < 1000; ++i) {
    text += "[cache.namespaces.n" + std::to_string(i) + "]\n";
  }
  CHECK(error_of(text) == "");
  CHECK(error_of(text + "[cache.namespaces.one_more]\n") ==
        "config: 1001 [cache.namespaces.<name>] tables are too many (allowed: at most 1000)");
}

// --- the tenant namespace -----------------------------------------------------------------

TEST_CASE("a tenant namespace without ttl_s takes cache.tenant_ttl_s, others take 300") {
  cfg::config c = load("[cache]\ntenant_ttl_s = 120\n[cache.namespaces.tenant]\n"
                       "[cache.namespaces.user]\n");
  CHECK(c.cache.namespaces.at("tenant").ttl_s == 120);
  CHECK(c.cache.namespaces.at("user").ttl_s == 300);
  CHECK(load("[cache.namespaces.tenant]\n").cache.namespaces.at("tenant").ttl_s == 3600);
}

TEST_CASE("a tenant namespace without ttl_s follows TENANT_CACHE_TTL and its SESSIOND_ variable") {
  // The namespace table comes before [cache] on purpose: the order in the file does not matter.
  const std::string text = "[cache.namespaces.tenant]\nnegative_ttl_s = 5\n[cache]\n"
                           "tenant_ttl_s = 120\n";
  CHECK(load(text, {{"TENANT_CACHE_TTL", "60"}}).cache.namespaces.at("tenant").ttl_s == 60);
  CHECK(load(text, {{"TENANT_CACHE_TTL", "60"}, {"SESSIOND_CACHE_TENANT_TTL_S", "45"}})
            .cache.namespaces.at("tenant")
            .ttl_s == 45);
  CHECK(load("[cache.namespaces.user]\n", {{"TENANT_CACHE_TTL", "60"}})
            .cache.namespaces.at("user")
            .ttl_s == 300);
}

TEST_CASE("a tenant namespace's own ttl_s beats cache.tenant_ttl_s and TENANT_CACHE_TTL") {
  CHECK(load("[cache.namespaces.tenant]\nttl_s = 7\n", {{"TENANT_CACHE_TTL", "60"}})
            .cache.namespaces.at("tenant")
            .ttl_s == 7);
}

// --- loader and warm ----------------------------------------------------------------------

TEST_CASE("a loader must use $1 and no other parameter") {
  const std::string allowed =
      " is invalid (allowed: empty or one SQL statement whose only parameter is $1, the key)";
  for (const char* bad :
       {"SELECT to_json(v) FROM t WHERE k = $1 AND n = $2", "SELECT to_json(v) FROM t WHERE k = $2",
        "SELECT to_json(v) FROM t", "SELECT to_json(v) FROM t WHERE k = $10",
        "SELECT to_json(v) FROM t WHERE k = '$1'", "SELECT to_json(v) FROM t -- WHERE k = $1",
        "SELECT to_json(v) FROM t /* $1 */", "SELECT to_json(v) FROM t WHERE k = a$1"}) {
    CAPTURE(bad);
    CHECK(error_of(user_ns(std::string("loader = \"") + bad + "\"")) ==
          std::string("config: cache.namespaces.user.loader = \"") + bad + "\"" + allowed);
  }
  for (const char* good : {"SELECT to_json(v) FROM t WHERE k = $1",
                           "SELECT to_json(v) FROM t WHERE k = $1 OR alias = $1",
                           "SELECT to_json(v) FROM t WHERE k = $1 AND note <> '$2'",
                           "SELECT to_json(v) FROM t WHERE k = $1 -- not $2\n",
                           "SELECT to_json(\"$2\") FROM t WHERE k=$1::text", "$1"}) {
    CAPTURE(good);
    CHECK(error_of(user_ns("loader = \"\"\"" + std::string(good) + "\"\"\"")) == "");
  }
}

TEST_CASE("a warm query takes no parameter") {
  CHECK(error_of(user_ns("warm = \"SELECT k, v FROM t WHERE k > $1\"")) ==
        "config: cache.namespaces.user.warm = \"SELECT k, v FROM t WHERE k > $1\" is invalid "
        "(allowed: empty or one SQL statement without parameters)");
  CHECK(error_of(user_ns("warm = \"SELECT k, v FROM t WHERE k > $2\"")) ==
        "config: cache.namespaces.user.warm = \"SELECT k, v FROM t WHERE k > $2\" is invalid "
        "(allowed: empty or one SQL statement without parameters)");
  CHECK(error_of(user_ns("warm = \"SELECT k, v FROM t WHERE note <> '$1'\"")) == "");
  CHECK(error_of(user_ns("warm = \"SELECT k, v FROM t\"")) == "");
}

TEST_CASE("a loader error stays on one line and names the statement") {
  std::string message = error_of(user_ns("loader = \"SELECT 1\\nFROM t\""));
  CHECK(message == "config: cache.namespaces.user.loader = \"SELECT 1\\nFROM t\" is invalid "
                   "(allowed: empty or one SQL statement whose only parameter is $1, the key)");
}

// --- printing and equality ----------------------------------------------------------------

TEST_CASE("to_toml output with namespaces loads back equal, the cache_url password masked") {
  cfg::config c = load(cache_example);
  std::string text = cfg::to_toml(c);
  CHECK_THAT(text, Contains("\ncache_url = \"rediss://:****@cache.internal:6380/3\"\n"));
  CHECK_THAT(text, !Contains("s3cret"));
  CHECK_THAT(text, Contains("\n[cache.namespaces.\"rooms.v2\"]\nttl_s = 300\n"));
  CHECK_THAT(text, Contains("\n[cache.namespaces.tenant]\nttl_s = 120\n"));
  CHECK_THAT(text, Contains("\nearly_refresh_beta = 2.0\n"));
  cfg::config again = load(text);
  CHECK(again.redis.cache_url == "rediss://:****@cache.internal:6380/3");
  again.redis.cache_url = c.redis.cache_url;
  CHECK(again == c);
  CHECK(cfg::to_toml(again) == text);
}

TEST_CASE("to_toml prints the namespace tables right after the [cache] keys") {
  std::string text = cfg::to_toml(load(cache_example));
  auto cache = text.find("\n[cache]\n");
  auto first = text.find("\n[cache.namespaces.");
  auto metrics = text.find("\n[metrics]\n");
  REQUIRE(cache != std::string::npos);
  REQUIRE(first != std::string::npos);
  CHECK(cache < first);
  CHECK(first < metrics);
  CHECK(text.find("\n[", cache + 1) == first);
}

TEST_CASE("two configs differing only in a namespace are not equal") {
  const cfg::config base = load(cache_example);
  cfg::config c = base;
  c.cache.namespaces.at("user").jitter_ratio = 0.2;
  CHECK(c != base);
  c = base;
  c.cache.namespaces.at("user").warm.clear();
  CHECK(c != base);
  c = base;
  c.cache.namespaces.erase("rooms.v2");
  CHECK(c != base);
  c = base;
  c.cache.namespaces["other"] = c.cache.namespaces.at("rooms.v2");
  c.cache.namespaces.erase("rooms.v2");
  CHECK(c != base);
  c = base;
  CHECK(c == base);
}

// --- the shipped file and the docs --------------------------------------------------------

TEST_CASE("the shipped config/sessiond.toml has the five namespaces of the Node service") {
  const std::string path = source_root() + "config/sessiond.toml";
  cfg::config c = cfg::load(path, {});
  const auto& ns = c.cache.namespaces;
  REQUIRE(ns.size() == 5);
  CHECK(ns.at("watson_session").ttl_s == 3600);
  CHECK(ns.at("user").ttl_s == 900);
  CHECK(ns.at("active_room").ttl_s == 300);
  CHECK(ns.at("tenant").ttl_s == 3600);
  CHECK(ns.at("metrics").ttl_s == 30);
  for (const auto& [name, n] : ns) {
    CAPTURE(name);
    CHECK(n.loader.empty()); // the tables are the application's own: commented out
    CHECK(n.warm.empty());
  }
  CHECK(cfg::load(path, {{"TENANT_CACHE_TTL", "600"}}).cache.namespaces.at("tenant").ttl_s == 600);
}

TEST_CASE("the commented loaders and warm queries of config/sessiond.toml load when uncommented") {
  std::istringstream in(read_text(source_root() + "config/sessiond.toml"));
  std::string text;
  std::string line;
  int uncommented = 0;
  while (std::getline(in, line)) {
    if (line.rfind("# loader = ", 0) == 0 || line.rfind("# warm = ", 0) == 0) {
      line = line.substr(2);
      ++uncommented;
    }
    text += line + "\n";
  }
  CHECK(uncommented == 6);
  cfg::config c = load(text);
  for (const auto& [name, n] : c.cache.namespaces) {
    CAPTURE(name);
    CHECK_THAT(n.loader, Contains("$1"));
  }
  CHECK_FALSE(c.cache.namespaces.at("user").warm.empty());
}

TEST_CASE("docs/configuration.md documents every namespace key") {
  std::string docs = read_text(source_root() + "docs/configuration.md");
  for (const char* key : {"ttl_s", "jitter_ratio", "negative_ttl_s", "stale_if_error_s", "loader",
                          "warm", "near_cache_entries", "near_ttl_ms", "early_refresh_beta"}) {
    CAPTURE(key);
    CHECK_THAT(docs, Contains(std::string("| `") + key + "` |"));
  }
  CHECK_THAT(docs, Contains("[cache.namespaces.<name>]"));
}
