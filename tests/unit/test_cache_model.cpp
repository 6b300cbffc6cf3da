// Unit tests of the cache's pure parts: keys and names, the stored entry, TTL jitter, XFetch,
// Cache-Status and Age, the invalidation messages, the near cache's LRU and expiry, ?ttl_s= and
// the read answers.
#include "adapters/cache/near_cache.hpp"
#include "adapters/cache/store.hpp"
#include "api/cache_routes.hpp"
#include "model/cache.hpp"

#include <catch2/catch.hpp>

#include <cmath>

using namespace sessiond;
using model::cache_entry;

TEST_CASE("cache keys, namespaces and prefixes follow their patterns") {
  CHECK(model::valid_cache_key("google:123"));
  CHECK(model::valid_cache_key("a.b_c-d@e:f"));
  CHECK(model::valid_cache_key(std::string(256, 'k')));
  CHECK_FALSE(model::valid_cache_key(""));
  CHECK_FALSE(model::valid_cache_key(std::string(257, 'k')));
  CHECK_FALSE(model::valid_cache_key("a b"));
  CHECK_FALSE(model::valid_cache_key("a{b}"));
  CHECK_FALSE(model::valid_cache_key("a*"));
  CHECK(model::valid_cache_namespace("watson_session"));
  CHECK_FALSE(model::valid_cache_namespace("a:b")); // ':' would make "{ns:key}" ambiguous
  CHECK_FALSE(model::valid_cache_namespace(std::string(65, 'n')));
  CHECK(model::valid_cache_prefix(""));
  CHECK_FALSE(model::valid_cache_prefix("a?"));
}

TEST_CASE("an entry survives encode and decode; anything else does not decode") {
  cache_entry e;
  e.value = R"({"a":"x\ny"})";
  e.stored_ms = 1000;
  e.fresh_until_ms = 91000;
  e.delta_ms = 12;
  e.etag = model::cache_etag(e.value);
  cache_entry back;
  REQUIRE(model::decode(model::encode(e), back));
  CHECK(back.value == e.value);
  CHECK(back.stored_ms == 1000);
  CHECK(back.fresh_until_ms == 91000);
  CHECK(back.delta_ms == 12);
  CHECK(back.etag == e.etag);
  CHECK_FALSE(back.negative);
  cache_entry neg;
  neg.negative = true;
  neg.stored_ms = 5;
  neg.fresh_until_ms = 6;
  REQUIRE(model::decode(model::encode(neg), back));
  CHECK(back.negative);
  CHECK(back.value.empty());
  for (const char* bad :
       {"", "plain text", "2 v 1 2 3 \"e\"\n1", "1 x 1 2 3 \"e\"\n1", "1 v a 2 3 \"e\"\n1",
        "1 v 1 2 3 \"e\" extra\n1", "1 n 1 2 3 \n1", "1 v 1 2 3 \"e\"\n"})
    CHECK_FALSE(model::decode(bad, back));
}

TEST_CASE("ETags are strong, quoted and change with the value") {
  auto a = model::cache_etag("{\"a\":1}");
  CHECK(a.size() == 18);
  CHECK(a.front() == '"');
  CHECK(a.back() == '"');
  CHECK(a != model::cache_etag("{\"a\":2}"));
  CHECK(a == model::cache_etag("{\"a\":1}"));
}

TEST_CASE("jittered TTLs stay in [ttl * (1 - ratio), ttl] and never drop below 1 ms") {
  CHECK(model::jittered_ttl_ms(100000, 0.1, 0.0) == 100000);
  CHECK(model::jittered_ttl_ms(100000, 0.1, 0.999999) >= 90000);
  CHECK(model::jittered_ttl_ms(100000, 0.1, 0.5) == 95000);
  CHECK(model::jittered_ttl_ms(100000, 0.0, 0.7) == 100000);
  CHECK(model::jittered_ttl_ms(1, 0.5, 0.99) == 1);
}

TEST_CASE("XFetch reloads early more often as the expiry nears, never with beta 0") {
  cache_entry e;
  e.fresh_until_ms = 100000;
  e.delta_ms = 100;
  // -delta * beta * ln(u): u = 1/e gives exactly delta * beta early.
  double u = std::exp(-1.0);
  CHECK(model::refresh_early(99900, e, 1.0, u));
  CHECK_FALSE(model::refresh_early(99800, e, 1.0, u));
  CHECK(model::refresh_early(99800, e, 2.0, u));
  CHECK_FALSE(model::refresh_early(99999, e, 0.0, u));
  CHECK_FALSE(model::refresh_early(50000, e, 1.0, 1.0)); // ln(1) = 0: only at the expiry
  e.delta_ms = 0;                                        // a PUT's value: no load time to go by
  CHECK_FALSE(model::refresh_early(99999, e, 1.0, 0.001));
}

TEST_CASE("Cache-Status and Age say how and when") {
  cache_entry e;
  e.stored_ms = 10000;
  e.fresh_until_ms = 70000;
  CHECK(model::cache_status(model::cache_outcome::hit, e, 20000) == "sessiond; hit; ttl=50");
  CHECK(model::cache_status(model::cache_outcome::near_hit, e, 20000) ==
        "sessiond; hit; detail=near; ttl=50");
  CHECK(model::cache_status(model::cache_outcome::miss, e, 10000) == "sessiond; fwd=miss; ttl=60");
  CHECK(model::cache_status(model::cache_outcome::stale, e, 70001) ==
        "sessiond; fwd=stale; ttl=-1");
  CHECK(model::cache_age_s(e, 12999) == 2);
  CHECK(model::cache_age_s(e, 0) == 0);
}

TEST_CASE("invalidation messages round-trip and unknown ones are refused") {
  cache::invalidation m{true, "user", "google:"}, back;
  REQUIRE(cache::decode(cache::encode(m), back));
  CHECK(back.prefix);
  CHECK(back.ns == "user");
  CHECK(back.key == "google:");
  REQUIRE(cache::decode("p user ", back)); // all keys
  CHECK(back.key.empty());
  REQUIRE(cache::decode("k room r1", back));
  CHECK_FALSE(back.prefix);
  for (const char* bad : {"", "x user k", "k user", "k bad:ns k", "k user a b", "k user "})
    CHECK_FALSE(cache::decode(bad, back));
}

TEST_CASE("the near cache keeps at most its capacity, least recently used out first") {
  cache::near_cache near(16, 1000); // one entry per stripe
  auto e = std::make_shared<const cache_entry>();
  for (int i = 0; i < 1000; ++i)
    near.put("k" + std::to_string(i), e, 0);
  CHECK(near.size() <= 16);
  cache::near_cache big(1600, 1000);
  big.put("a", e, 0);
  big.put("b", e, 0);
  CHECK(big.get("a", 999) != nullptr);
  CHECK(big.get("a", 1000) == nullptr); // near_ttl_ms passed: dropped
  CHECK(big.size() == 1);
  big.put("room:1", e, 0);
  big.put("room:2", e, 0);
  big.put("user:1", e, 0);
  CHECK(big.erase_prefix("room:") == 2);
  big.erase("user:1");
  CHECK(big.get("user:1", 1) == nullptr);
  big.clear();
  CHECK(big.size() == 0);
  cache::near_cache off(0, 1000);
  off.put("a", e, 0);
  CHECK(off.get("a", 0) == nullptr);
  CHECK_FALSE(off.enabled());
}

TEST_CASE("?ttl_s= is a whole number within bounds and the only query parameter") {
  CHECK(api::ttl_query("/v1/cache/a/b", 100) == 0);
  CHECK(api::ttl_query("/v1/cache/a/b?", 100) == 0);
  CHECK(api::ttl_query("/v1/cache/a/b?ttl_s=60", 100) == 60);
  CHECK(api::ttl_query("/v1/cache/a/b?ttl_s=100", 100) == 100);
  CHECK(api::ttl_query("/v1/cache/a/b?ttl_s=101", 100) == -1);
  CHECK(api::ttl_query("/v1/cache/a/b?ttl_s=0", 100) == -1);
  CHECK(api::ttl_query("/v1/cache/a/b?ttl_s=-5", 100) == -1);
  CHECK(api::ttl_query("/v1/cache/a/b?ttl_s=6x", 100) == -1);
  CHECK(api::ttl_query("/v1/cache/a/b?other=1", 100) == -1);
}

TEST_CASE("a read's answer: the value with headers, 304 on a matching tag, problems otherwise") {
  auto e = std::make_shared<cache_entry>();
  e->value = "[1,2]";
  e->etag = model::cache_etag(e->value);
  e->stored_ms = 0;
  e->fresh_until_ms = 60000;
  messages::cache_result r;
  r.status = 200;
  r.entry = e;
  r.outcome = model::cache_outcome::hit;
  auto ok = api::cache_response(r, "", 5000);
  CHECK(ok.status == 200);
  CHECK(ok.body == "[1,2]");
  auto header = [](const http::response& res, const std::string& k) {
    for (const auto& [n, v] : res.headers)
      if (n == k)
        return v;
    return std::string();
  };
  CHECK(header(ok, "Age") == "5");
  CHECK(header(ok, "ETag") == e->etag);
  CHECK(api::cache_response(r, e->etag, 5000).status == 304);
  CHECK(api::cache_response(r, "\"other\", W/" + e->etag, 5000).status == 304);
  CHECK(api::cache_response(r, "\"other\"", 5000).status == 200);
  r.status = 503;
  r.entry = nullptr;
  r.retry_after_s = 2;
  auto busy = api::cache_response(r, "", 0);
  CHECK(busy.status == 503);
  CHECK(header(busy, "Retry-After") == "2");
  r.status = 404;
  CHECK(header(api::cache_response(r, "", 0), "Cache-Status") == "sessiond; fwd=miss");
}
