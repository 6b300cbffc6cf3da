// The cache's HTTP API on a real node, Redis and PostgreSQL: the contract's routes and answers,
// read-through with single flight (loader queries counted in PostgreSQL), negative caching, TTL
// and jitter, invalidation by key and prefix on every node, and the fail-safe paths with Redis or
// PostgreSQL gone.
#include "pg_support.hpp"
#include "tcp_proxy.hpp"

#include <algorithm>
#include <atomic>
#include <future>
#include <thread>

using namespace sessiond;
using test::client;
using test::one;
using test::sql;
using json = nlohmann::json;

namespace {

/// A loader that counts every query it runs in the `loads` table and takes `sleep_s`.
std::string counting_loader(double sleep_s = 0) {
  return "WITH hit AS (INSERT INTO loads(k) VALUES ($1) RETURNING k) "
         "SELECT to_jsonb(u) FROM users u JOIN hit ON u.id = hit.k, pg_sleep(" +
         std::to_string(sleep_s) + ") AS s";
}

/// pg_config() with the `users` and `loads` tables in its schema and a namespace `user` whose
/// loader counts its queries.
config::config cache_config(double sleep_s = 0) {
  auto c = test::pg_config();
  sql(c, "CREATE SCHEMA IF NOT EXISTS \"" + c.postgres.schema + "\"");
  sql(c, "CREATE TABLE users (id text PRIMARY KEY, name text, active boolean DEFAULT true);"
         "CREATE TABLE loads (k text, at timestamptz DEFAULT now());"
         "INSERT INTO users (id, name) VALUES ('google:1', 'Ada'), ('google:2', 'Grace')");
  auto& ns = c.cache.namespaces["user"];
  ns.ttl_s = 900;
  ns.loader = counting_loader(sleep_s);
  ns.warm = "SELECT id, to_jsonb(u) FROM users u WHERE active";
  c.cache.namespaces["plain"].ttl_s = 60; // no loader
  return c;
}

int loads(const config::config& c, const std::string& key = "") {
  return std::stoi(one(c, "SELECT count(*) FROM loads" +
                              (key.empty() ? std::string() : " WHERE k = '" + key + "'")));
}

json body_of(const test::reply& r) {
  return json::parse(r.body);
}

test::reply put_value(client& c, const std::string& path, const std::string& body) {
  return c.put(path, body);
}

} // namespace

TEST_CASE("PUT, GET and DELETE follow the contract, with Age, Cache-Status and ETag") {
  auto cfg = cache_config();
  test::running_node n(cfg);
  client c(n.port);
  REQUIRE(put_value(c, "/v1/cache/plain/room:42", R"({"room":"r-9","n":1})").status == 204);
  auto r = c.get("/v1/cache/plain/room:42");
  REQUIRE(r.status == 200);
  CHECK(body_of(r) == json{{"room", "r-9"}, {"n", 1}});
  CHECK(r.header("Age") == "0");
  CHECK(r.header("Cache-Status").rfind("sessiond; hit", 0) == 0);
  auto etag = r.header("ETag");
  REQUIRE(etag.size() == 18);
  CHECK(c.get("/v1/cache/plain/room:42", {{"If-None-Match", etag}}).status == 304);
  // The near cache answers the second read.
  CHECK(c.get("/v1/cache/plain/room:42").header("Cache-Status").find("detail=near") !=
        std::string::npos);
  // Any JSON value, and ?ttl_s= sets the TTL (PTTL in Redis, no loader: no stale time kept).
  REQUIRE(put_value(c, "/v1/cache/plain/n?ttl_s=5", "42").status == 204);
  CHECK(c.get("/v1/cache/plain/n").body == "42");
  test::redis_probe probe(cfg.redis.url);
  auto pttl = probe.command({"PTTL", cfg.redis.key_prefix + "c{plain:n}"}).integer;
  CHECK(pttl > 4000);
  CHECK(pttl <= 5000);
  REQUIRE(c.del("/v1/cache/plain/room:42").status == 204);
  auto gone = c.get("/v1/cache/plain/room:42");
  CHECK(gone.status == 404);
  CHECK(gone.header("Content-Type") == "application/problem+json");
  CHECK(gone.header("Cache-Status") == "sessiond; fwd=miss");
  auto list = body_of(c.get("/v1/cache"));
  REQUIRE(list["namespaces"].size() == 2);
  for (const auto& ns : list["namespaces"])
    for (const char* k :
         {"name", "hits", "misses", "hit_ratio", "loads", "load_errors", "near_entries"})
      CHECK(ns.contains(k));
}

TEST_CASE("bad input gets a 4xx problem and changes nothing") {
  auto cfg = cache_config();
  cfg.cache.max_value_bytes = 1000;
  cfg.cache.max_ttl_s = 3600;
  test::running_node n(cfg);
  client c(n.port);
  test::redis_probe probe(cfg.redis.url);
  auto keys = [&] { return probe.keys(cfg.redis.key_prefix + "c{*").size(); };
  struct bad {
    const char* what;
    int status;
    std::function<test::reply()> call;
  };
  std::vector<bad> cases = {
      {"unknown namespace", 404, [&] { return c.get("/v1/cache/nope/k"); }},
      {"unknown namespace PUT", 404, [&] { return c.put("/v1/cache/nope/k", "1"); }},
      {"key out of pattern", 400, [&] { return c.get("/v1/cache/plain/a%20b"); }},
      {"key too long", 400, [&] { return c.put("/v1/cache/plain/" + std::string(257, 'k'), "1"); }},
      {"not JSON", 400, [&] { return c.put("/v1/cache/plain/k", "{nope"); }},
      {"empty body", 400,
       [&] {
         return c.put("/v1/cache/plain/k", "", {{"Content-Type", "application/json"}});
       }},
      {"ttl_s zero", 400, [&] { return c.put("/v1/cache/plain/k?ttl_s=0", "1"); }},
      {"ttl_s over max_ttl_s", 400, [&] { return c.put("/v1/cache/plain/k?ttl_s=3601", "1"); }},
      {"ttl_s not a number", 400, [&] { return c.put("/v1/cache/plain/k?ttl_s=abc", "1"); }},
      {"other query", 400, [&] { return c.put("/v1/cache/plain/k?x=1", "1"); }},
      {"over max_value_bytes", 413,
       [&] { return c.put("/v1/cache/plain/k", "\"" + std::string(1200, 'x') + "\""); }},
      {"not application/json", 415,
       [&] {
         return c.put("/v1/cache/plain/k", "1", {{"Content-Type", "text/plain"}});
       }},
      {"invalidate: neither", 400,
       [&] { return c.call(test::bhttp::verb::post, "/v1/cache/plain/invalidate", "{}"); }},
      {"invalidate: both", 400,
       [&] {
         return c.call(test::bhttp::verb::post, "/v1/cache/plain/invalidate",
                       R"({"prefix":"a","all":true})");
       }},
      {"invalidate: all false", 400,
       [&] {
         return c.call(test::bhttp::verb::post, "/v1/cache/plain/invalidate", R"({"all":false})");
       }},
      {"invalidate: bad prefix", 400,
       [&] {
         return c.call(test::bhttp::verb::post, "/v1/cache/plain/invalidate",
                       R"({"prefix":"a b"})");
       }},
      {"warm without a warm query", 404,
       [&] { return c.call(test::bhttp::verb::post, "/v1/cache/plain/warm"); }},
      {"PATCH", 405, [&] { return c.patch("/v1/cache/plain/k", "{}"); }},
  };
  for (auto& b : cases) {
    INFO(b.what);
    auto r = b.call();
    CHECK(r.status == b.status);
    CHECK(r.header("Content-Type") == "application/problem+json");
  }
  CHECK(keys() == 0);
}

TEST_CASE("a miss runs the loader once, caches the value, and remembers a missing row") {
  auto cfg = cache_config();
  cfg.cache.namespaces["user"].negative_ttl_s = 30;
  test::running_node n(cfg);
  client c(n.port);
  auto first = c.get("/v1/cache/user/google:1");
  REQUIRE(first.status == 200);
  CHECK(body_of(first)["name"] == "Ada");
  CHECK(first.header("Cache-Status").rfind("sessiond; fwd=miss", 0) == 0);
  auto second = c.get("/v1/cache/user/google:1");
  CHECK(second.status == 200);
  CHECK(second.header("Cache-Status").rfind("sessiond; hit", 0) == 0);
  CHECK(loads(cfg, "google:1") == 1);
  // No row: 404, and the "not found" is kept negative_ttl_s.
  CHECK(c.get("/v1/cache/user/google:404").status == 404);
  auto again = c.get("/v1/cache/user/google:404");
  CHECK(again.status == 404);
  CHECK(again.header("Cache-Status").rfind("sessiond; hit", 0) == 0);
  CHECK(loads(cfg, "google:404") == 1);
  test::redis_probe probe(cfg.redis.url);
  auto neg_ttl = probe.command({"PTTL", cfg.redis.key_prefix + "c{user:google:404}"}).integer;
  CHECK(neg_ttl > 26000); // 30 s with up to 10% jitter
  CHECK(neg_ttl <= 30000);
  // The value's TTL: 900 s less up to 10% jitter, plus stale_if_error_s (300) kept in Redis.
  auto ttl = probe.command({"PTTL", cfg.redis.key_prefix + "c{user:google:1}"}).integer;
  CHECK(ttl > (810 + 300 - 2) * 1000);
  CHECK(ttl <= (900 + 300) * 1000);
  auto stats = body_of(c.get("/v1/cache"));
  for (const auto& ns : stats["namespaces"])
    if (ns["name"] == "user") {
      CHECK(ns["loads"] == 2);
      CHECK(ns["misses"] == 2);
      CHECK(ns["hits"] == 2);
    }
}

TEST_CASE("jitter spreads the TTLs of keys written together over ttl_s * (1 - jitter_ratio)") {
  auto cfg = cache_config();
  cfg.cache.namespaces["plain"].jitter_ratio = 0.2;
  test::running_node n(cfg);
  client c(n.port);
  test::redis_probe probe(cfg.redis.url);
  std::vector<long long> ttls;
  for (int i = 0; i < 50; ++i) {
    REQUIRE(c.put("/v1/cache/plain/j" + std::to_string(i) + "?ttl_s=100", "1").status == 204);
    ttls.push_back(
        probe.command({"PTTL", cfg.redis.key_prefix + "c{plain:j" + std::to_string(i) + "}"})
            .integer);
  }
  auto [lo, hi] = std::minmax_element(ttls.begin(), ttls.end());
  CHECK(*lo >= 79000);
  CHECK(*hi <= 100000);
  CHECK(*hi - *lo > 5000); // spread, not one expiry
}

TEST_CASE("1,000 concurrent reads of one missing key cause exactly one loader query") {
  auto cfg = cache_config(0.3);
  cfg.http.max_connections = 5000;
  test::running_node n(cfg);
  constexpr int readers = 1000;
  std::atomic<int> ready{0}, ok{0};
  std::promise<void> go;
  auto start = go.get_future().share();
  std::vector<std::thread> threads;
  for (int i = 0; i < readers; ++i)
    threads.emplace_back([&] {
      client c(n.port);
      ++ready;
      start.wait();
      auto r = c.get("/v1/cache/user/google:2");
      if (r.status == 200 && body_of(r)["name"] == "Grace")
        ++ok;
    });
  while (ready.load() < readers)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  go.set_value();
  for (auto& t : threads)
    t.join();
  CHECK(ok.load() == readers);
  CHECK(loads(cfg, "google:2") == 1);
}

TEST_CASE(
    "two nodes: one load for a herd across both, invalidations reach the other's near cache") {
  auto cfg = cache_config(0.3);
  cfg.cache.namespaces["user"].near_ttl_ms = 600000; // only an invalidation can drop it
  auto cfg2 = cfg;
  cfg2.node.id = "test-node-2";
  test::running_node a(cfg);
  test::running_node b(cfg2);
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 100; ++i)
    threads.emplace_back([&, i] {
      client c(i % 2 ? a.port : b.port);
      if (c.get("/v1/cache/user/google:1").status == 200)
        ++ok;
    });
  for (auto& t : threads)
    t.join();
  CHECK(ok.load() == 100);
  CHECK(loads(cfg, "google:1") <= 2); // at most one per node
  CHECK(loads(cfg, "google:1") == 1); // and in practice one: the lock holds the other back
  client ca(a.port), cb(b.port);
  // b holds the value in its near cache; a changes it.
  REQUIRE(cb.get("/v1/cache/user/google:1").header("Cache-Status").find("near") !=
          std::string::npos);
  REQUIRE(ca.put("/v1/cache/user/google:1", R"({"name":"Ada L."})").status == 204);
  auto t0 = std::chrono::steady_clock::now();
  REQUIRE(test::eventually(
      [&] { return body_of(cb.get("/v1/cache/user/google:1"))["name"] == "Ada L."; },
      std::chrono::seconds(1)));
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(1));
  // A DELETE on a drops it on b too: b's next read loads again.
  REQUIRE(cb.get("/v1/cache/user/google:1").status == 200);
  REQUIRE(ca.del("/v1/cache/user/google:1").status == 204);
  REQUIRE(test::eventually(
      [&] {
        return cb.get("/v1/cache/user/google:1").header("Cache-Status").find("fwd=miss") !=
               std::string::npos;
      },
      std::chrono::seconds(1)));
  // And a prefix invalidation on b reaches a's near cache.
  REQUIRE(ca.get("/v1/cache/user/google:2").status == 200);
  REQUIRE(ca.get("/v1/cache/user/google:2").header("Cache-Status").find("near") !=
          std::string::npos);
  auto inv =
      cb.call(test::bhttp::verb::post, "/v1/cache/user/invalidate", R"({"prefix":"google:"})");
  REQUIRE(inv.status == 200);
  CHECK(body_of(inv)["invalidated"] >= 1);
  CHECK(test::eventually(
      [&] {
        return ca.get("/v1/cache/user/google:2").header("Cache-Status").find("fwd=miss") !=
               std::string::npos;
      },
      std::chrono::seconds(1)));
}

TEST_CASE("invalidation by prefix and all removes exactly the matching keys") {
  auto cfg = cache_config();
  test::running_node n(cfg);
  client c(n.port);
  for (const char* k : {"room:1", "room:2", "room:3", "roomy", "user:1"})
    REQUIRE(c.put(std::string("/v1/cache/plain/") + k, "1").status == 204);
  auto r = c.call(test::bhttp::verb::post, "/v1/cache/plain/invalidate", R"({"prefix":"room:"})");
  REQUIRE(r.status == 200);
  CHECK(body_of(r)["invalidated"] == 3);
  CHECK(c.get("/v1/cache/plain/room:2").status == 404);
  CHECK(c.get("/v1/cache/plain/roomy").status == 200);
  auto all = c.call(test::bhttp::verb::post, "/v1/cache/plain/invalidate", R"({"all":true})");
  CHECK(body_of(all)["invalidated"] == 2);
  CHECK(c.get("/v1/cache/plain/user:1").status == 404);
}

TEST_CASE("a prefix invalidation of 100,000 keys holds a concurrent GET load up by a few ms") {
  auto cfg = cache_config();
  cfg.cache.namespaces["plain"].near_cache_entries = 0; // every GET reads Redis
  test::running_node n(cfg);
  client c(n.port);
  test::redis_probe probe(cfg.redis.url);
  // 100,000 entries written straight into Redis by one script (the format encode() writes).
  const redis::script fill{R"lua(
for i = 1, 100000 do
  redis.call('SET', ARGV[1] .. i .. '}', '1 v 1 99999999999999 0 "0000000000000000"\n1', 'PX', 600000)
end
return 1)lua"};
  REQUIRE(probe.eval(fill, {}, {cfg.redis.key_prefix + "c{plain:bulk:"}).integer == 1);
  REQUIRE(c.put("/v1/cache/plain/other", "{\"a\":1}").status == 204);
  std::atomic<bool> done{false};
  std::vector<double> ms;
  std::thread load([&] {
    client g(n.port);
    while (!done.load()) {
      auto t0 = std::chrono::steady_clock::now();
      auto r = g.get("/v1/cache/plain/other");
      ms.push_back(
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      REQUIRE(r.status == 200);
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  auto r = c.call(test::bhttp::verb::post, "/v1/cache/plain/invalidate", R"({"prefix":"bulk:"})");
  done = true;
  load.join();
  REQUIRE(r.status == 200);
  CHECK(body_of(r)["invalidated"] == 100000);
  std::sort(ms.begin(), ms.end());
  REQUIRE(ms.size() > 100);
  auto p99 = ms[ms.size() * 99 / 100];
  WARN("GET p99 during the invalidation: " << p99 << " ms over " << ms.size() << " requests");
  CHECK(p99 < 25.0);
  CHECK(probe.command({"EXISTS", cfg.redis.key_prefix + "c{plain:other}"}).integer == 1);
}

TEST_CASE("warm runs the warm query and caches every row") {
  auto cfg = cache_config();
  test::running_node n(cfg);
  client c(n.port);
  auto r = c.call(test::bhttp::verb::post, "/v1/cache/user/warm");
  REQUIRE(r.status == 200);
  CHECK(body_of(r)["warmed"] == 2);
  auto hit = c.get("/v1/cache/user/google:2");
  CHECK(hit.header("Cache-Status").rfind("sessiond; hit", 0) == 0);
  CHECK(loads(cfg) == 0);
}

TEST_CASE("Redis gone: reads answer from the loader, writes answer 503, /readyz says degraded") {
  test::private_redis cache_redis;
  auto cfg = cache_config();
  cfg.redis.cache_url = cache_redis.url();
  test::running_node n(cfg);
  client c(n.port);
  REQUIRE(test::eventually([&] { return c.get("/v1/cache/user/google:1").status == 200; }));
  cache_redis.stop();
  REQUIRE(test::eventually([&] {
    auto r = c.get("/readyz");
    return r.body.find("degraded") != std::string::npos;
  }));
  auto r = c.get("/v1/cache/user/google:2");
  CHECK(r.status == 200);
  CHECK(body_of(r)["name"] == "Grace");
  CHECK(c.get("/v1/cache/user/google:404").status == 404);
  auto w = c.put("/v1/cache/user/google:1", "{}");
  CHECK(w.status == 503);
  CHECK(!w.header("Retry-After").empty());
  CHECK(c.get("/readyz").status == 200); // the cache is never required: sessions still serve
  CHECK(body_of(c.get("/v1/cache"))["degraded"] == true);
}

TEST_CASE("PostgreSQL gone: stale values within stale_if_error_s, then 503") {
  auto port = static_cast<std::uint16_t>(std::stoi(
      test::env_or_fail("POSTGRES_URL").substr(test::env_or_fail("POSTGRES_URL").rfind(':') + 1)));
  test::tcp_proxy proxy(port);
  auto cfg = cache_config();
  auto url = cfg.postgres.url;
  auto at = url.find("127.0.0.1:");
  cfg.postgres.url = url.substr(0, at) + "127.0.0.1:" + std::to_string(proxy.port()) +
                     url.substr(url.find('/', at));
  cfg.postgres.connect_timeout_ms = 300;
  auto& ns = cfg.cache.namespaces["user"];
  ns.ttl_s = 1;
  ns.jitter_ratio = 0;
  ns.stale_if_error_s = 2;
  ns.near_cache_entries = 0;
  ns.early_refresh_beta = 0;
  test::running_node n(cfg);
  client c(n.port);
  REQUIRE(c.get("/v1/cache/user/google:1").status == 200);
  proxy.set_down(true);
  std::this_thread::sleep_for(std::chrono::milliseconds(1100)); // past the TTL
  auto stale = c.get("/v1/cache/user/google:1");
  CHECK(stale.status == 200);
  CHECK(stale.header("Cache-Status").rfind("sessiond; fwd=stale", 0) == 0);
  CHECK(body_of(stale)["name"] == "Ada");
  REQUIRE(test::eventually([&] { return c.get("/v1/cache/user/google:1").status == 503; },
                           std::chrono::seconds(4)));
  auto gone = c.get("/v1/cache/user/google:1");
  CHECK(gone.status == 503);
  CHECK(!gone.header("Retry-After").empty());
  proxy.set_down(false);
  CHECK(test::eventually([&] { return c.get("/v1/cache/user/google:1").status == 200; }));
}

TEST_CASE("a loader that does not prepare stops start-up with a line naming it") {
  auto cfg = cache_config();
  cfg.cache.namespaces["user"].loader = "SELECT to_jsonb(x) FROM no_such_table x WHERE x.id = $1";
  app::node n(cfg);
  std::string what;
  try {
    n.start();
  } catch (const std::exception& e) {
    what = e.what();
  }
  CHECK(what.find("cache.namespaces.user.loader does not prepare") != std::string::npos);
  CHECK(what.find("no_such_table") != std::string::npos);
}

TEST_CASE("above cache.max_redis_memory_ratio loaded values are not written and PUT is refused") {
  test::private_redis cache_redis({"--maxmemory", "4mb", "--maxmemory-policy", "noeviction"});
  auto cfg = cache_config();
  cfg.redis.cache_url = cache_redis.url();
  cfg.cache.max_redis_memory_ratio = 0.5;
  test::running_node n(cfg);
  client c(n.port);
  REQUIRE(c.put("/v1/cache/plain/before", "1").status == 204);
  // Fill the cache's Redis past half of its maxmemory behind the node's back.
  REQUIRE(
      cache_redis.raw({"EVAL",
                       "for i = 1, 2500 do redis.call('SET', 'fill' .. i, string.rep('x', 1000)) "
                       "end return 1",
                       "0"}) == ":1");
  REQUIRE(test::eventually([&] { return c.put("/v1/cache/plain/after", "1").status == 503; },
                           std::chrono::seconds(15)));
  auto refused = c.put("/v1/cache/plain/after", "1");
  CHECK(refused.body.find("max_redis_memory_ratio") != std::string::npos);
  CHECK(c.get("/v1/cache/plain/before").status == 200); // reads are still served
  auto loaded = c.get("/v1/cache/user/google:1");       // a load answers, and is not written
  CHECK(loaded.status == 200);
  CHECK(cache_redis.raw({"EXISTS", cfg.redis.key_prefix + "c{user:google:1}"}) == ":0");
}
