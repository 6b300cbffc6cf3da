// Unit tests of the session model: ids, PUT bodies, entity tags, JSON, TTL arithmetic, shard_for; the text helpers.
#include "model/session.hpp"
#include "model/shard_for.hpp"
#include "model/text.hpp"
#include "model/ttl.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

using namespace sessiond::model;

TEST_CASE("session ids must match [A-Za-z0-9._:-]{1,128}") {
  CHECK(valid_id("abc"));
  CHECK(valid_id("A-b_c.d:e9"));
  CHECK(valid_id(std::string(128, 'x')));
  CHECK_FALSE(valid_id(""));
  CHECK_FALSE(valid_id(std::string(129, 'x')));
  CHECK_FALSE(valid_id("a/b"));
  CHECK_FALSE(valid_id("a b"));
  CHECK_FALSE(valid_id("a%20b"));
  CHECK_FALSE(valid_id("ñ"));
  CHECK_FALSE(valid_id("a\"b"));
}

TEST_CASE("a valid PUT body yields user id, compact data and ttl") {
  put_body b;
  auto err = parse_put_body(R"({"user_id":"u1","data":{"b":1, "a":[1,2]},"ttl_s":60})", {}, b);
  REQUIRE_FALSE(err);
  CHECK(b.user_id == "u1");
  CHECK(b.data == R"({"a":[1,2],"b":1})");
  CHECK(b.ttl_s == 60);
}

TEST_CASE("bad PUT bodies are refused with a clear 4xx") {
  put_body b;
  auto status = [&](const std::string& text) {
    auto err = parse_put_body(text, {100, 3600}, b);
    return err ? err->status : 0u;
  };
  CHECK(status("{not json") == 400);
  CHECK(status("[]") == 400);
  CHECK(status(R"({"data":{}})") == 400);
  CHECK(status(R"({"user_id":5,"data":{}})") == 400);
  CHECK(status(R"({"user_id":"bad id","data":{}})") == 400);
  CHECK(status(R"({"user_id":"u","data":[1]})") == 400);
  CHECK(status(R"({"user_id":"u","data":"x"})") == 400);
  CHECK(status(R"({"user_id":"u","data":{},"ttl_s":0})") == 400);
  CHECK(status(R"({"user_id":"u","data":{},"ttl_s":3601})") == 400);
  CHECK(status(R"({"user_id":"u","data":{},"ttl_s":1.5})") == 400);
  CHECK(status(R"({"user_id":"u","data":{},"extra":1})") == 400);
  CHECK(status(R"({"user_id":"u","data":{"v":")" + std::string(200, 'x') + "\"}}") == 413);
  CHECK(status(R"({"user_id":"u","data":{}})") == 0);
  auto err = parse_put_body(R"({"user_id":"u","data":{},"extra":1})", {}, b);
  REQUIRE(err);
  CHECK(err->detail.find("extra") != std::string::npos);
}

TEST_CASE("If-Match values are * or one strong numeric tag") {
  CHECK(parse_etag_condition("*")->any);
  CHECK(parse_etag_condition("\"7\"")->version == 7);
  CHECK(parse_etag_condition(" \"12\" ")->version == 12);
  CHECK_FALSE(parse_etag_condition("7"));
  CHECK_FALSE(parse_etag_condition("W/\"7\""));
  CHECK_FALSE(parse_etag_condition("\"7\", \"8\""));
  CHECK_FALSE(parse_etag_condition("\"0\""));
  CHECK_FALSE(parse_etag_condition("\"-1\""));
  CHECK_FALSE(parse_etag_condition("\"abc\""));
  CHECK_FALSE(parse_etag_condition("\"99999999999999999999999\""));
  CHECK_FALSE(parse_etag_condition(""));
  CHECK(etag(42) == "\"42\"");
}

TEST_CASE("a session renders as the contract's JSON") {
  session s;
  s.id = "s1";
  s.user_id = "u1";
  s.data = R"({"k":"v"})";
  s.version = 3;
  s.created_ms = 1700000000000;
  s.last_activity_ms = 1700000001234;
  s.expires_ms = 1700003601234;
  s.ttl_s = 3600;
  auto j = nlohmann::json::parse(to_json(s));
  CHECK(j["id"] == "s1");
  CHECK(j["user_id"] == "u1");
  CHECK(j["data"]["k"] == "v");
  CHECK(j["version"] == 3);
  CHECK(j["status"] == "ACTIVE");
  CHECK(j["created_at"] == "2023-11-14T22:13:20.000Z");
  CHECK(j["last_activity_at"] == "2023-11-14T22:13:21.234Z");
  CHECK(j["expires_at"] == "2023-11-14T23:13:21.234Z");
  CHECK(j["ttl_s"] == 3600);
  s.state = status::revoked;
  CHECK(nlohmann::json::parse(to_json(s))["status"] == "REVOKED");
}

TEST_CASE("expiry is the idle TTL after the last activity, capped by the max lifetime") {
  ttl_policy p{60, 7200};
  CHECK(expires_at(0, 1000, 3600, p) == 3601000);
  CHECK(expires_at(0, 5000000, 3600, p) == 7200000);
  CHECK(expired(1000, 1000));
  CHECK_FALSE(expired(1001, 1000));
}

TEST_CASE("reads slide the TTL at most once per touch interval and never past max lifetime") {
  ttl_policy p{60, 7200};
  manual_clock clk(0);
  std::int64_t created = 0, touched = 0, ttl = 3600;
  std::int64_t ex = expires_at(created, touched, ttl, p);
  clk.advance_ms(59999);
  CHECK_FALSE(should_touch(created, touched, ex, ttl, clk.now_ms(), p));
  clk.advance_ms(1);
  REQUIRE(should_touch(created, touched, ex, ttl, clk.now_ms(), p));
  touched = clk.now_ms();
  ex = expires_at(created, touched, ttl, p);
  CHECK(ex == 3660000);
  clk.advance_ms(30000);
  CHECK_FALSE(should_touch(created, touched, ex, ttl, clk.now_ms(), p));
  // Near the max lifetime the expiry is already capped: sliding would not move it.
  touched = 3700000;
  ex = expires_at(created, touched, ttl, p);
  CHECK(ex == 7200000);
  CHECK_FALSE(should_touch(created, touched, ex, ttl, 3800000, p));
  // An expired session is never touched.
  CHECK_FALSE(should_touch(0, 0, 1000, ttl, 1000, p));
}

TEST_CASE("a touch interval of zero slides on every read") {
  ttl_policy p{0, 7200};
  CHECK(should_touch(0, 1000, expires_at(0, 1000, 60, p), 60, 1001, p));
}

TEST_CASE("shard_for is pinned: changing the hash moves every session") {
  CHECK(fnv1a64("") == 0xcbf29ce484222325ull);
  CHECK(fnv1a64("a") == 0xaf63dc4c8601ec8cull);
  CHECK(shard_for("session-1", 16) == 13);
  CHECK(shard_for("bench-42", 16) == 14);
  CHECK(shard_for("user:7:web", 16) == 1);
  CHECK(shard_for("user:7:web", 7) == 4);
  CHECK(shard_for("anything", 1) == 0);
}

TEST_CASE("shard_for spreads ids evenly") {
  std::vector<int> counts(16);
  for (int i = 0; i < 16000; ++i)
    counts[shard_for("session-" + std::to_string(i), 16)]++;
  for (int c : counts) {
    CHECK(c > 800);
    CHECK(c < 1200);
  }
}

TEST_CASE("RFC 3339 times render in UTC with milliseconds across dates") {
  CHECK(rfc3339_ms(0) == "1970-01-01T00:00:00.000Z");
  CHECK(rfc3339_ms(951782400000) == "2000-02-29T00:00:00.000Z");
  CHECK(rfc3339_ms(1709251199999) == "2024-02-29T23:59:59.999Z");
  CHECK(rfc3339_ms(1798761599123) == "2026-12-31T23:59:59.123Z");
  CHECK(rfc3339_ms(4102444800000) == "2100-01-01T00:00:00.000Z");
  CHECK(rfc3339_ms(-1) == "1969-12-31T23:59:59.999Z");
}

TEST_CASE("a PUT body nested deeper than 128 levels is a 400, not a stack overflow") {
  put_body b;
  std::string deep = R"({"user_id":"u","data":)";
  for (int i = 0; i < 100000; ++i)
    deep += "{\"a\":";
  deep += "1";
  for (int i = 0; i < 100000; ++i)
    deep += "}";
  deep += "}";
  auto err = parse_put_body(deep, {}, b);
  REQUIRE(err);
  CHECK(err->status == 400);
  CHECK(json_depth_within(R"({"a":"[[[[[[[[[[[[[[[[[[[[["})", 2));
  CHECK_FALSE(json_depth_within("[[[", 2));
  CHECK(json_depth_within("[[]]", 2));
}

TEST_CASE("data holding the NUL character is refused (PostgreSQL's jsonb cannot store it)") {
  put_body b;
  auto err = parse_put_body(R"({"user_id":"u","data":{"k":"a\u0000b"}})", {}, b);
  REQUIRE(err);
  CHECK(err->status == 400);
  CHECK(err->detail.find("NUL") != std::string::npos);
  CHECK(parse_put_body(R"({"user_id":"u","data":{"a\u0000":1}})", {}, b));
  // An escaped backslash followed by u0000 is six ordinary characters, and other escapes pass.
  CHECK_FALSE(parse_put_body(R"({"user_id":"u","data":{"k":"\\u0000","e":"\u0001\n"}})", {}, b));
  CHECK(json_has_nul(R"(["x","\u0000"])"));
  CHECK_FALSE(json_has_nul(R"(["\\\\u0000", "u0000"])"));
}

TEST_CASE("text helpers: case-insensitive compare, %-decoding, URL authorities") {
  using namespace sessiond::model;
  CHECK(iequals("Content-Length", "content-LENGTH"));
  CHECK_FALSE(iequals("@", "`")); // differ only in bit 0x20, and neither is a letter
  CHECK_FALSE(iequals("abc", "abcd"));
  CHECK(starts_with_nocase("REDISS://h", "rediss://"));
  CHECK_FALSE(starts_with_nocase("red", "redis://"));

  std::string out;
  CHECK(percent_decode("p%40ss%3Aw%2fd", out));
  CHECK(out == "p@ss:w/d");
  CHECK_FALSE(percent_decode("bad%4", out));
  CHECK_FALSE(percent_decode("bad%zz", out));

  std::string error;
  authority a;
  REQUIRE(split_authority("[::1]:6380", a, error));
  CHECK(a.host == "::1");
  CHECK(a.bracketed);
  CHECK(a.port == "6380");
  REQUIRE(split_authority("cache.local", a, error));
  CHECK(a.host == "cache.local");
  CHECK_FALSE(a.has_port);
  CHECK_FALSE(split_authority("[::1", a, error));
  CHECK(error.find("unclosed") != std::string::npos);
  CHECK_FALSE(split_authority("[::1]x", a, error));
  CHECK_FALSE(split_authority(":6379", a, error));
  CHECK(error.find("no host") != std::string::npos);
}
