// Integration tests of the session API served by PostgreSQL alone (adapters/postgres/
// session_store) against the PostgreSQL at POSTGRES_URL: statuses, versions, preconditions, TTL
// arithmetic at explicit times (no test sleeps), concurrency on real connections, the repair
// notes and the write-behind upsert's respect of them. Each test works in a schema of its own.
#include "adapters/postgres/bulk_upsert.hpp"
#include "adapters/postgres/client.hpp"
#include "adapters/postgres/migrate.hpp"
#include "adapters/postgres/session_store.hpp"
#include "adapters/postgres/sessions.hpp"
#include "tests/integration/pg_schema.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <set>
#include <string>
#include <thread>
#include <vector>

using namespace sessiond::postgres;
using sessiond::model::etag_condition;

namespace {

/// A schema of its own for one test with the migrations embedded in this build applied (so the
/// CMake glob that embeds them is exercised too), dropped with everything in it at the end.
struct scratch_schema : sessiond::test::pg_schema {
  scratch_schema() : pg_schema("ss_") {
    client c = connect();
    apply_migrations(c, embedded_migrations());
  }
  client connect() const { return client(options()); }
};

const std::int64_t t0 = 1'700'000'000'000;
const std::int64_t second = 1000;

store_settings test_settings() {
  store_settings s;
  s.policy.touch_interval_s = 60;
  s.policy.max_lifetime_s = 86400;
  s.default_ttl_s = 3600;
  s.tombstone_ttl_s = 600;
  s.max_data_bytes = 256;
  s.max_user_sessions = 3;
  return s;
}

/// test_settings() for a store that notes its writes in session_redis_repair (degraded mode).
store_settings noting_settings() {
  store_settings s = test_settings();
  s.note_repairs = true;
  return s;
}

store_condition none() {
  return {};
}

store_condition if_match(std::int64_t v) {
  store_condition c;
  c.if_match = etag_condition{false, v};
  return c;
}

store_condition if_match_any() {
  store_condition c;
  c.if_match = etag_condition{true, 0};
  return c;
}

store_condition if_none_match(std::int64_t v) {
  store_condition c;
  c.if_none_match = etag_condition{false, v};
  return c;
}

store_condition if_none_match_any() {
  store_condition c;
  c.if_none_match = etag_condition{true, 0};
  return c;
}

/// A migrated schema, a connection in it and a store with test_settings().
struct fixture {
  scratch_schema schema;
  client c = schema.connect();
  session_store store{test_settings()};

  store_result put(const std::string& id, std::int64_t now, const std::string& data = "{}",
                   std::optional<std::int64_t> ttl_s = std::nullopt,
                   const store_condition& cond = {}, const std::string& user = "u1") {
    return store.put(c, id, user, data, ttl_s, cond, now);
  }
  session_row row(const std::string& id) {
    auto r = load_session(c, id);
    REQUIRE(r);
    return *r;
  }
  std::string scalar(const std::string& sql, const std::vector<field>& p = {}) {
    result r = c.exec_params(sql, p);
    REQUIRE(r.rows.size() == 1);
    return r.rows[0][0].value_or("<NULL>");
  }
  /// Waits (up to 10 s) until `other`'s statement waits on a row lock; false if it never does.
  bool waits_on_lock(const client& other) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    for (;;) {
      if (scalar("select count(*) from pg_stat_activity where pid = $1 and "
                 "wait_event_type = 'Lock'",
                 {std::to_string(other.backend_pid())}) == "1")
        return true;
      if (std::chrono::steady_clock::now() >= deadline)
        return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }
};

std::string compact(const std::string& json) {
  return nlohmann::json::parse(json).dump();
}

} // namespace

// --- PUT --------------------------------------------------------------------------------------

TEST_CASE("the migrations embedded in the build include the repair table", "[session_store]") {
  const auto& files = embedded_migrations();
  CHECK(std::any_of(files.begin(), files.end(), [](const migration_source& m) {
    return m.name == "0003_session_redis_repair.sql";
  }));
}

TEST_CASE("a first PUT creates version 1 with 201 and a second replaces it at version 2 with "
          "200, keeping created_at",
          "[session_store]") {
  fixture f;
  auto a = f.put("s1", t0, R"({"a":1})");
  CHECK(a.status == 201);
  CHECK(a.session.version == 1);
  CHECK(a.session.data == R"({"a":1})");
  CHECK(a.session.created_ms == t0);
  CHECK(a.session.last_activity_ms == t0);
  CHECK(a.session.expires_ms == t0 + 3600 * second);
  CHECK(a.session.ttl_s == 3600);
  REQUIRE(a.written.size() == 1);
  CHECK(a.written[0].version == 1);
  CHECK(a.written[0].status == "ACTIVE");
  CHECK(a.written[0].is_active);

  auto b = f.put("s1", t0 + 5 * second, R"({"b":2})", 120, none(), "u2");
  CHECK(b.status == 200);
  CHECK(b.session.version == 2);
  CHECK(b.session.user_id == "u2");
  CHECK(b.session.created_ms == t0);
  CHECK(b.session.last_activity_ms == t0 + 5 * second);
  CHECK(b.session.expires_ms == t0 + 125 * second);
  CHECK(b.session.ttl_s == 120);
  auto r = f.row("s1");
  CHECK(r.version == 2);
  CHECK(r.user_id == "u2");
  CHECK(r.created_at_ms == t0);
  CHECK(r.expires_at_ms == t0 + 125 * second);
  CHECK(r.revoked_at_ms == 0);
  CHECK(f.scalar("select updated_at is not null from user_session") == "t");
  REQUIRE(b.written.size() == 1);
  CHECK(b.written[0].data == R"({"b":2})");
  CHECK(b.written[0].expires_at_ms == r.expires_at_ms);
}

TEST_CASE("If-None-Match: * creates only: 412 over a live session, which stays unchanged",
          "[session_store]") {
  fixture f;
  CHECK(f.put("s1", t0, R"({"a":1})", std::nullopt, if_none_match_any()).status == 201);
  auto again = f.put("s1", t0 + second, R"({"a":2})", std::nullopt, if_none_match_any());
  CHECK(again.status == 412);
  CHECK(again.detail == "the session is at version 1");
  CHECK(again.written.empty());
  CHECK(f.row("s1").version == 1);
  CHECK(f.row("s1").data == R"({"a": 1})");
}

TEST_CASE("a stale If-Match gets 412 naming the version, a matching one replaces, and If-Match "
          "on an absent id gets 412",
          "[session_store]") {
  fixture f;
  f.put("s1", t0);
  f.put("s1", t0 + second);
  auto stale = f.put("s1", t0 + 2 * second, "{}", std::nullopt, if_match(1));
  CHECK(stale.status == 412);
  CHECK(stale.detail == "the session is at version 2");
  CHECK(f.row("s1").version == 2);
  auto ok = f.put("s1", t0 + 3 * second, R"({"m":true})", std::nullopt, if_match(2));
  CHECK(ok.status == 200);
  CHECK(ok.session.version == 3);
  CHECK(f.put("s1", t0 + 4 * second, "{}", std::nullopt, if_match_any()).status == 200);
  CHECK(f.put("nope", t0, "{}", std::nullopt, if_match_any()).status == 412);
  CHECK(f.put("nope", t0, "{}", std::nullopt, if_match(1)).status == 412);
  CHECK(!load_session(f.c, "nope"));
}

// --- GET --------------------------------------------------------------------------------------

TEST_CASE("GET answers 200 with the session, 304 when If-None-Match matches, 404 when absent",
          "[session_store]") {
  fixture f;
  f.put("s1", t0, R"({"x":[1,2]})", 600);
  auto got = f.store.get(f.c, "s1", none(), t0 + second);
  CHECK(got.status == 200);
  CHECK(got.session.id == "s1");
  CHECK(got.session.user_id == "u1");
  CHECK(got.session.data == R"({"x":[1,2]})");
  CHECK(got.session.version == 1);
  CHECK(got.session.ttl_s == 600);
  CHECK(got.session.touch_ms == t0);
  CHECK(got.written.empty()); // not due for a slide
  CHECK(f.store.get(f.c, "s1", if_none_match(1), t0 + second).status == 304);
  CHECK(f.store.get(f.c, "s1", if_none_match_any(), t0 + second).status == 304);
  CHECK(f.store.get(f.c, "s1", if_none_match(7), t0 + second).status == 200);
  auto wrong = f.store.get(f.c, "s1", if_match(7), t0 + second);
  CHECK(wrong.status == 412);
  CHECK(wrong.detail == "the session is at version 1");
  CHECK(f.store.get(f.c, "nope", none(), t0).status == 404);
}

TEST_CASE("GET slides the idle TTL once per touch interval, keeping the version, and reports "
          "the slide as a write",
          "[session_store]") {
  fixture f;
  f.put("s1", t0, "{}", 3600);
  auto early = f.store.get(f.c, "s1", none(), t0 + 59 * second);
  CHECK(early.session.expires_ms == t0 + 3600 * second);
  CHECK(early.written.empty());

  auto due = f.store.get(f.c, "s1", none(), t0 + 61 * second);
  CHECK(due.status == 200);
  CHECK(due.session.version == 1);
  CHECK(due.session.last_activity_ms == t0 + 61 * second);
  CHECK(due.session.touch_ms == t0 + 61 * second);
  CHECK(due.session.expires_ms == t0 + 3661 * second);
  CHECK(due.session.ttl_s == 3600);
  REQUIRE(due.written.size() == 1);
  CHECK(due.written[0].version == 1);
  CHECK(due.written[0].last_activity_at_ms == t0 + 61 * second);
  auto r = f.row("s1");
  CHECK(r.version == 1);
  CHECK(r.last_activity_at_ms == t0 + 61 * second);
  CHECK(r.expires_at_ms == t0 + 3661 * second);

  auto again = f.store.get(f.c, "s1", none(), t0 + 100 * second);
  CHECK(again.written.empty());
  CHECK(f.row("s1").last_activity_at_ms == t0 + 61 * second);
  // A slide computed from an older read does not move last activity back.
  CHECK(f.store.get(f.c, "s1", none(), t0 + 200 * second).written.size() == 1);
  CHECK(f.row("s1").last_activity_at_ms == t0 + 200 * second);
}

// --- PATCH ------------------------------------------------------------------------------------

TEST_CASE("PATCH merges into data at the next version and keeps the idle TTL; a 413, 422 or 400 "
          "patch changes nothing",
          "[session_store]") {
  fixture f;
  f.put("s1", t0, R"({"a":1,"b":{"c":2,"d":3}})", 120);
  auto p = f.store.patch(f.c, "s1", R"({"b":{"d":null,"e":[true]},"z":"new"})", none(),
                         t0 + 10 * second);
  CHECK(p.status == 200);
  CHECK(p.session.version == 2);
  CHECK(p.session.data == R"({"a":1,"b":{"c":2,"e":[true]},"z":"new"})");
  CHECK(p.session.created_ms == t0);
  CHECK(p.session.last_activity_ms == t0 + 10 * second);
  CHECK(p.session.expires_ms == t0 + 130 * second);
  CHECK(p.session.ttl_s == 120);
  REQUIRE(p.written.size() == 1);
  CHECK(p.written[0].data == p.session.data);

  const std::string before = f.row("s1").data;
  auto too_big = f.store.patch(f.c, "s1", R"({"big":")" + std::string(300, 'x') + "\"}", none(),
                               t0 + 11 * second);
  CHECK(too_big.status == 413);
  CHECK(f.store.patch(f.c, "s1", "[1]", none(), t0 + 11 * second).status == 422);
  CHECK(f.store.patch(f.c, "s1", "{", none(), t0 + 11 * second).status == 400);
  auto stale = f.store.patch(f.c, "s1", R"({"q":1})", if_match(1), t0 + 11 * second);
  CHECK(stale.status == 412);
  CHECK(stale.detail == "the session is at version 2");
  CHECK(stale.written.empty());
  auto r = f.row("s1");
  CHECK(r.version == 2);
  CHECK(r.data == before);
  CHECK(r.last_activity_at_ms == t0 + 10 * second);
  CHECK(f.store.patch(f.c, "s1", R"({"q":1})", if_match(2), t0 + 12 * second).status == 200);
  CHECK(f.store.patch(f.c, "nope", R"({"q":1})", none(), t0).status == 404);
}

// --- DELETE and tombstones --------------------------------------------------------------------

TEST_CASE("DELETE answers 204 with the tombstone's version; the id then answers 404, a PUT 410 "
          "until the tombstone TTL passed, then 201 at the next version",
          "[session_store]") {
  fixture f;
  f.put("s1", t0, R"({"a":1})");
  const auto t1 = t0 + 30 * second;
  CHECK(f.store.revoke(f.c, "s1", if_match(3), t1).status == 412);
  auto del = f.store.revoke(f.c, "s1", none(), t1);
  CHECK(del.status == 204);
  CHECK(del.session.version == 2);
  REQUIRE(del.written.size() == 1);
  const auto& w = del.written[0];
  CHECK(w.status == "REVOKED");
  CHECK(!w.is_active);
  CHECK(w.revoked_at_ms == t1);
  CHECK(w.last_activity_at_ms == t1);
  CHECK(w.version == 2);
  auto r = f.row("s1");
  CHECK(r.status == "REVOKED");
  CHECK(r.revoked_at_ms == t1);
  CHECK(r.data == R"({"a": 1})");

  CHECK(f.store.get(f.c, "s1", none(), t1 + second).status == 404);
  CHECK(f.store.patch(f.c, "s1", R"({"b":1})", none(), t1 + second).status == 404);
  CHECK(f.store.revoke(f.c, "s1", none(), t1 + second).status == 404);
  auto gone = f.put("s1", t1 + 600 * second - 1);
  CHECK(gone.status == 410);
  CHECK(gone.written.empty());
  CHECK(f.row("s1").version == 2);

  auto reborn = f.put("s1", t1 + 600 * second, R"({"new":1})", std::nullopt, if_none_match_any());
  CHECK(reborn.status == 201);
  CHECK(reborn.session.version == 3);
  CHECK(reborn.session.created_ms == t1 + 600 * second);
  r = f.row("s1");
  CHECK(r.status == "ACTIVE");
  CHECK(r.is_active);
  CHECK(r.revoked_at_ms == 0);
  CHECK(r.created_at_ms == t1 + 600 * second);
}

// --- expiry and max lifetime ------------------------------------------------------------------

TEST_CASE("an expired session answers 404 and a PUT creates it anew at the stored version + 1",
          "[session_store]") {
  fixture f;
  f.put("s1", t0, "{}", 60);
  f.put("s1", t0 + second, R"({"v":2})", 60); // version 2, expires at t0 + 61 s
  const auto ex = t0 + 61 * second;
  CHECK(f.store.get(f.c, "s1", none(), ex - 1).status == 200);
  CHECK(f.store.get(f.c, "s1", none(), ex).status == 404);
  CHECK(f.store.patch(f.c, "s1", R"({"a":1})", none(), ex).status == 404);
  CHECK(f.store.revoke(f.c, "s1", none(), ex).status == 404);
  CHECK(f.put("s1", ex, "{}", std::nullopt, if_match_any()).status == 412);
  CHECK(f.row("s1").version == 2);

  auto fresh = f.put("s1", ex + 5 * second, R"({"v":3})", std::nullopt, if_none_match_any());
  CHECK(fresh.status == 201);
  CHECK(fresh.session.version == 3);
  CHECK(fresh.session.created_ms == ex + 5 * second);
  CHECK(fresh.session.expires_ms == ex + 5 * second + 3600 * second);
}

TEST_CASE("no write or slide moves expires_at past created + max lifetime, and past it a PUT "
          "or PATCH answers 404",
          "[session_store]") {
  fixture f;
  const std::int64_t cap = t0 + 86400 * second;
  CHECK(f.put("s1", t0, "{}", 86400).session.expires_ms == cap);
  auto late = f.put("s1", cap - 1800 * second, R"({"late":1})", 3600);
  CHECK(late.status == 200);
  CHECK(late.session.expires_ms == cap);
  CHECK(late.session.ttl_s == 3600);
  CHECK(f.row("s1").expires_at_ms == cap);
  auto read = f.store.get(f.c, "s1", none(), cap - 1000 * second); // due, but nothing to slide
  CHECK(read.status == 200);
  CHECK(read.written.empty());
  CHECK(read.session.expires_ms == cap);
  CHECK(f.store.get(f.c, "s1", none(), cap).status == 404);

  // A session written under a longer max lifetime, then the max lifetime shrank.
  f.put("s2", t0, "{}", 7200);
  auto shorter = test_settings();
  shorter.policy.max_lifetime_s = 3600;
  session_store strict(shorter);
  CHECK(strict.put(f.c, "s2", "u1", "{}", 60, none(), t0 + 4000 * second).status == 404);
  CHECK(strict.patch(f.c, "s2", R"({"a":1})", none(), t0 + 4000 * second).status == 404);
  CHECK(f.row("s2").version == 1);
}

// --- users ------------------------------------------------------------------------------------

TEST_CASE("list_user returns live sessions soonest expiry first, at most max_user_sessions; "
          "revoke_user revokes every live one",
          "[session_store]") {
  fixture f;
  f.put("late", t0, "{}", 500);
  f.put("soon", t0, "{}", 100);
  f.put("mid", t0, "{}", 300);
  f.put("mid2", t0, "{}", 400);
  f.put("expired", t0, "{}", 10);
  f.put("revoked", t0, "{}", 1000);
  f.store.revoke(f.c, "revoked", none(), t0 + second);
  f.put("other", t0, "{}", 1000, none(), "u2");
  const auto now = t0 + 20 * second;

  auto listed = f.store.list_user(f.c, "u1", now);
  CHECK(listed.status == 200);
  std::vector<std::string> ids;
  for (const auto& s : listed.sessions)
    ids.push_back(s.id);
  CHECK(ids == std::vector<std::string>{"soon", "mid", "mid2"});
  CHECK(listed.sessions[0].ttl_s == 100);
  CHECK(listed.written.empty());

  auto all = f.store.revoke_user(f.c, "u1", now);
  CHECK(all.status == 200);
  CHECK(all.count == 4);
  REQUIRE(all.written.size() == 4);
  for (const auto& w : all.written) {
    CHECK(w.status == "REVOKED");
    CHECK(w.version == 2);
    CHECK(w.revoked_at_ms == now);
  }
  CHECK(f.row("expired").status == "ACTIVE");
  CHECK(f.row("revoked").version == 2);
  CHECK(f.row("other").status == "ACTIVE");
  CHECK(f.store.list_user(f.c, "u1", now).sessions.empty());
  CHECK(f.store.revoke_user(f.c, "u1", now).count == 0);
  CHECK(f.store.list_user(f.c, "u2", now).sessions.size() == 1);
}

// --- concurrency ------------------------------------------------------------------------------

TEST_CASE("two connections racing to create one id end at versions 1 and 2, without an error",
          "[session_store]") {
  fixture f;
  constexpr int ids = 20;
  std::atomic<int> ready{0};
  std::vector<store_result> results[2];
  std::string errors[2];
  auto run = [&](int who) {
    try {
      client c = f.schema.connect();
      ++ready;
      while (ready.load() < 2) {
      }
      for (int i = 0; i < ids; ++i)
        results[who].push_back(f.store.put(c, "race" + std::to_string(i), "u" + std::to_string(who),
                                           "{}", std::nullopt, none(), t0));
    } catch (const std::exception& e) {
      errors[who] = e.what();
    }
  };
  std::thread a(run, 0), b(run, 1);
  a.join();
  b.join();
  CHECK(errors[0].empty());
  CHECK(errors[1].empty());
  REQUIRE(results[0].size() == ids);
  REQUIRE(results[1].size() == ids);
  for (int i = 0; i < ids; ++i) {
    INFO("race" << i);
    std::set<std::int64_t> versions{results[0][i].session.version, results[1][i].session.version};
    std::set<unsigned> statuses{results[0][i].status, results[1][i].status};
    CHECK(versions == std::set<std::int64_t>{1, 2});
    CHECK(statuses == std::set<unsigned>{200, 201});
    CHECK(f.row("race" + std::to_string(i)).version == 2);
  }
}

TEST_CASE("a PUT whose insert waits on another transaction's insert of the id replaces that row "
          "once it commits, and creates its own once it rolls back",
          "[session_store]") {
  fixture f;
  for (const char* end : {"commit", "rollback"}) {
    INFO(end);
    const std::string id = std::string("held-") + end;
    client holder = f.schema.connect();
    client writer = f.schema.connect();
    session_row first;
    first.session_id = id;
    first.user_id = "holder";
    first.data = "{}";
    first.version = 1;
    first.created_at_ms = first.last_activity_at_ms = t0;
    first.expires_at_ms = t0 + 3600 * second;
    holder.exec("begin");
    upsert_sessions(holder, {first});

    store_result r;
    std::string error;
    std::thread t([&] {
      try {
        r = f.store.put(writer, id, "writer", R"({"w":1})", std::nullopt, none(), t0 + second);
      } catch (const std::exception& e) {
        error = e.what();
      }
    });
    // The writer's insert now waits for the holder's transaction (a row lock, not a timer).
    CHECK(f.waits_on_lock(writer));
    holder.exec(end);
    t.join();
    CHECK(error.empty());
    bool committed = std::string(end) == "commit";
    CHECK(r.status == (committed ? 200u : 201u));
    CHECK(r.session.version == (committed ? 2 : 1));
    CHECK(f.row(id).user_id == "writer");
  }
}

TEST_CASE("100 concurrent PATCHes from 4 connections all land: every field present, version 101",
          "[session_store]") {
  fixture f;
  auto settings = test_settings();
  settings.max_data_bytes = 65536;
  session_store store(settings);
  REQUIRE(store.put(f.c, "hot", "u1", "{}", std::nullopt, none(), t0).session.version == 1);
  std::string errors[4];
  std::vector<unsigned> statuses[4];
  auto run = [&](int who) {
    try {
      client c = f.schema.connect();
      for (int i = 0; i < 25; ++i) {
        auto key = "f" + std::to_string(who) + "_" + std::to_string(i);
        statuses[who].push_back(
            store.patch(c, "hot", "{\"" + key + "\":" + std::to_string(i) + "}", none(), t0 + i)
                .status);
      }
    } catch (const std::exception& e) {
      errors[who] = e.what();
    }
  };
  std::vector<std::thread> threads;
  for (int who = 0; who < 4; ++who)
    threads.emplace_back(run, who);
  for (auto& t : threads)
    t.join();
  for (int who = 0; who < 4; ++who) {
    CHECK(errors[who].empty());
    CHECK(std::count(statuses[who].begin(), statuses[who].end(), 200u) == 25);
  }
  auto row = f.row("hot");
  CHECK(row.version == 101);
  auto data = nlohmann::json::parse(row.data);
  CHECK(data.size() == 100);
  for (int who = 0; who < 4; ++who)
    for (int i = 0; i < 25; ++i)
      CHECK(data.value("f" + std::to_string(who) + "_" + std::to_string(i), -1) == i);
}

// --- repair notes -----------------------------------------------------------------------------

TEST_CASE("note_repairs records every write and slide at its highest version, and clear_repair "
          "keeps a newer note",
          "[session_store]") {
  fixture f;
  session_store noting(noting_settings());

  f.put("plain", t0); // a store without note_repairs notes nothing
  CHECK(count_repairs(f.c) == 0);

  noting.put(f.c, "s1", "u1", "{}", std::nullopt, none(), t0);
  CHECK(noting.put(f.c, "s1", "u1", "{}", std::nullopt, if_match(9), t0).status == 412);
  noting.patch(f.c, "s1", R"({"a":1})", none(), t0 + second);
  auto notes = load_repairs(f.c, 10);
  REQUIRE(notes.size() == 1);
  CHECK(notes[0].session_id == "s1");
  CHECK(notes[0].version == 2);
  REQUIRE(notes[0].row);
  CHECK(notes[0].row->version == 2);
  CHECK(notes[0].row->data == R"({"a":1})"); // compact, as Redis holds it

  CHECK(!clear_repair(f.c, "s1", 1)); // the note is at 2
  CHECK(count_repairs(f.c) == 1);
  CHECK(noting.get(f.c, "s1", none(), t0 + 100 * second).written.size() == 1); // a slide
  CHECK(load_repairs(f.c, 10).at(0).row->last_activity_at_ms == t0 + 100 * second);

  noting.put(f.c, "s2", "u1", "{}", std::nullopt, none(), t0);
  noting.revoke(f.c, "s2", none(), t0 + second);
  notes = load_repairs(f.c, 1);
  REQUIRE(notes.size() == 1);
  CHECK(notes[0].session_id == "s1"); // oldest first
  notes = load_repairs(f.c, 10);
  REQUIRE(notes.size() == 2);
  CHECK(notes[1].session_id == "s2");
  CHECK(notes[1].version == 2);
  REQUIRE(notes[1].row);
  CHECK(notes[1].row->status == "REVOKED");
  f.c.exec("delete from user_session where session_id = 's2'");
  CHECK(!load_repairs(f.c, 10).at(1).row); // deleted since (retention)
  CHECK(clear_repair(f.c, "s2", 2));

  // A note already past this write's version (noted by a later writer) keeps its version.
  f.c.exec("update session_redis_repair set version = 10 where session_id = 's1'");
  noting.patch(f.c, "s1", R"({"b":1})", none(), t0 + 200 * second);
  CHECK(f.scalar("select version from session_redis_repair where session_id = 's1'") == "10");
  CHECK(!clear_repair(f.c, "s1", 3));
  CHECK(clear_repair(f.c, "s1", 10));
  CHECK(count_repairs(f.c) == 0);

  auto all = noting.revoke_user(f.c, "u1", t0 + 300 * second);
  CHECK(all.count == 2); // s1 and plain
  CHECK(count_repairs(f.c) == 2);
}

TEST_CASE("the write-behind upsert never overwrites a row with a pending repair note, and "
          "load_versions reports the note",
          "[session_store]") {
  fixture f;
  session_store noting(noting_settings());
  noting.put(f.c, "noted", "u1", R"({"pg":1})", std::nullopt, none(), t0);
  f.put("plain", t0);

  auto from_redis = [&](const std::string& id) {
    session_row r = f.row(id);
    r.version = 5;
    r.data = R"({"redis":1})";
    return r;
  };
  std::vector<std::string> written;
  CHECK(upsert_sessions(f.c, {from_redis("noted"), from_redis("plain")}, &written) == 1);
  CHECK(written == std::vector<std::string>{"plain"});
  CHECK(f.row("noted").version == 1);
  CHECK(f.row("noted").data == R"({"pg": 1})");

  auto versions = load_versions(f.c, {"noted", "plain", "absent"});
  REQUIRE(versions.size() == 2);
  std::sort(versions.begin(), versions.end(),
            [](const auto& a, const auto& b) { return a.session_id < b.session_id; });
  CHECK(versions[0].session_id == "noted");
  CHECK(versions[0].version == 1);
  CHECK(versions[0].repair_pending);
  CHECK(versions[1].session_id == "plain");
  CHECK(versions[1].version == 5);
  CHECK(!versions[1].repair_pending);

  CHECK(clear_repair(f.c, "noted", 1));
  CHECK(upsert_sessions(f.c, {from_redis("noted")}) == 1);
  CHECK(f.row("noted").version == 5);
  CHECK(!load_versions(f.c, {"noted"}).at(0).repair_pending);
}

TEST_CASE("a write-behind upsert (either path) waiting on a noting write's row lock does not "
          "overwrite it once that commits",
          "[session_store]") {
  using upsert_fn =
      std::size_t (*)(client&, const std::vector<session_row>&, std::vector<std::string>*);
  auto [path, upsert] = GENERATE(table<const char*, upsert_fn>(
      {{"upsert_sessions", &upsert_sessions}, {"bulk_upsert_sessions", &bulk_upsert_sessions}}));
  INFO(path);
  fixture f;
  session_store noting(noting_settings());
  f.put("raced", t0, R"({"v":1})");
  session_row from_redis = f.row("raced");
  from_redis.version = 7;
  from_redis.data = R"({"redis":7})";

  // The degraded write holds the row (and its note) uncommitted while the sync's upsert starts.
  client degraded = f.schema.connect();
  client sync = f.schema.connect();
  degraded.exec("begin");
  degraded.exec("update user_session set data = '{\"degraded\":1}', version = 2 "
                "where session_id = 'raced'");
  note_repair(degraded, "raced", 2);
  std::size_t written = 99;
  std::string error;
  std::thread t([&] {
    try {
      written = upsert(sync, {from_redis}, nullptr);
    } catch (const std::exception& e) {
      error = e.what();
    }
  });
  CHECK(f.waits_on_lock(sync));
  degraded.exec("commit");
  t.join();
  CHECK(error.empty());
  CHECK(written == 0);
  CHECK(f.row("raced").version == 2);
  CHECK(f.row("raced").data == R"({"degraded": 1})");
}

TEST_CASE("the COPY upsert stores exactly what the unnest upsert stores, with the same fence, "
          "note guard and written ids",
          "[session_store]") {
  fixture f;
  session_store noting(noting_settings());
  auto make = [](const std::string& id, std::int64_t version, const std::string& status) {
    session_row r;
    r.session_id = id;
    r.user_id = "u-" + id;
    r.data = R"({"id":")" + id + R"(","n":[1,{"x":"\u00e9"}]})";
    r.version = version;
    r.status = status;
    r.is_active = status == "ACTIVE";
    r.created_at_ms = t0 + 1;
    r.last_activity_at_ms = t0 + 2 * second + 3;
    r.expires_at_ms = t0 + 3600 * second + 7;
    r.revoked_at_ms = status == "REVOKED" ? t0 + 5 * second : 0;
    return r;
  };
  std::vector<session_row> rows;
  for (int i = 0; i < 40; ++i)
    rows.push_back(make("k" + std::to_string(i), 3, i % 4 == 0 ? "REVOKED" : "ACTIVE"));
  rows.push_back(make("k1", 2, "ACTIVE")); // a lower duplicate: dedupe_batch drops it
  // The same rows through each path, in two schemas, give identical tables.
  scratch_schema other;
  client c2 = other.connect();
  std::vector<std::string> ids_unnest, ids_copy;
  CHECK(upsert_sessions(f.c, rows, &ids_unnest) == 40);
  CHECK(bulk_upsert_sessions(c2, rows, &ids_copy) == 40);
  std::sort(ids_unnest.begin(), ids_unnest.end());
  std::sort(ids_copy.begin(), ids_copy.end());
  CHECK(ids_unnest == ids_copy);
  const std::string dump = "select session_id, user_id, data::text, version, status, is_active, "
                           "created_at, last_activity_at, expires_at, revoked_at "
                           "from user_session order by session_id";
  CHECK(f.c.exec(dump).rows == c2.exec(dump).rows);
  // Fenced: a lower or equal version changes nothing; a higher one writes; a noted row is kept.
  CHECK(bulk_upsert_sessions(c2, {make("k2", 3, "ACTIVE"), make("k3", 1, "ACTIVE")}) == 0);
  noting.put(c2, "k5", "u-k5", R"({"pg":1})", std::nullopt, none(), t0 + 10 * second);
  std::vector<std::string> written;
  CHECK(bulk_upsert_sessions(c2, {make("k2", 9, "ACTIVE"), make("k5", 9, "ACTIVE")}, &written) ==
        1);
  CHECK(written == std::vector<std::string>{"k2"});
  CHECK(load_session(c2, "k5")->version == 4);
  // Refused before anything is sent.
  CHECK_THROWS_AS(bulk_upsert_sessions(c2, {make("", 1, "ACTIVE")}), pg_error);
  CHECK_THROWS_AS(bulk_upsert_sessions(c2, {make("bad", 1, "GONE")}), pg_error);
}

// --- data -------------------------------------------------------------------------------------

TEST_CASE("data with unicode and nested objects round-trips compact, byte for byte as Redis "
          "holds it",
          "[session_store]") {
  fixture f;
  const std::string input =
      R"({"z":{"deep":{"list":[1,2.5,-3,{"k":"ünïcødé 😀 日本語"}],"empty":{},"nil":null}},)"
      R"("a":"tab\t quote\" backslash\\ \u00e9","t":true,"n":[]})";
  const std::string want = compact(input); // what the API's PUT parsing hands the store
  auto put = f.put("s1", t0, want);
  CHECK(put.session.data == want);
  REQUIRE(put.written.size() == 1);
  CHECK(put.written[0].data == want);
  CHECK(f.scalar("select data::text from user_session") != want); // jsonb's text has spaces

  CHECK(f.store.get(f.c, "s1", none(), t0 + second).session.data == want);
  auto listed = f.store.list_user(f.c, "u1", t0 + second);
  REQUIRE(listed.sessions.size() == 1);
  CHECK(listed.sessions[0].data == want);

  const std::string patch = R"({"z":{"deep":{"empty":null,"added":"✓"}}})";
  auto merged = nlohmann::json::parse(want);
  merged.merge_patch(nlohmann::json::parse(patch));
  auto patched = f.store.patch(f.c, "s1", patch, none(), t0 + 2 * second);
  CHECK(patched.session.data == merged.dump());
  CHECK(f.store.get(f.c, "s1", none(), t0 + 3 * second).session.data == merged.dump());
}
