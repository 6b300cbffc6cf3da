// The routing table of sessions.mode and the Redis fallback (docs/modes.md), pinned case by case:
// which store serves each operation, when a write is copied into Redis, when it is noted for
// put-back; and which modes may run side by side (the node registry).
#include "app/node_registry.hpp"
#include "app/session_modes.hpp"

#include <catch2/catch.hpp>

using namespace sessiond::app;
using kind = sessiond::messages::session_op_kind;

namespace {

constexpr route_decision redis{false, false, false};
constexpr route_decision pg{true, false, false};
constexpr route_decision pg_then_copy{true, true, false};
constexpr route_decision pg_noted{true, false, true};

const kind reads[] = {kind::get, kind::list_user};
const kind writes[] = {kind::put, kind::patch, kind::del, kind::revoke_user};

} // namespace

TEST_CASE("postgres: every operation on PostgreSQL alone, whatever Redis does") {
  for (auto state : {redis_state::serving, redis_state::degraded, redis_state::returning})
    for (bool fallback : {true, false})
      for (auto k :
           {kind::get, kind::list_user, kind::put, kind::patch, kind::del, kind::revoke_user})
        CHECK(decide(session_mode::postgres, state, fallback, k) == pg);
}

TEST_CASE("shadow: reads on PostgreSQL; writes on PostgreSQL then copied, or noted while Redis "
          "is away") {
  for (bool fallback : {true, false}) {
    for (auto k : reads) {
      CHECK(decide(session_mode::shadow, redis_state::serving, fallback, k) == pg);
      CHECK(decide(session_mode::shadow, redis_state::degraded, fallback, k) == pg);
    }
    for (auto k : writes) {
      CHECK(decide(session_mode::shadow, redis_state::serving, fallback, k) == pg_then_copy);
      CHECK(decide(session_mode::shadow, redis_state::degraded, fallback, k) == pg_noted);
      CHECK(decide(session_mode::shadow, redis_state::returning, fallback, k) == pg_noted);
    }
  }
}

TEST_CASE("redis-read: reads on Redis (PostgreSQL when degraded with the fallback, or while "
          "returning); writes on PostgreSQL first") {
  for (auto k : reads) {
    CHECK(decide(session_mode::redis_read, redis_state::serving, true, k) == redis);
    CHECK(decide(session_mode::redis_read, redis_state::degraded, true, k) == pg);
    CHECK(decide(session_mode::redis_read, redis_state::degraded, false, k) == redis); // 503
    CHECK(decide(session_mode::redis_read, redis_state::returning, false, k) == pg);
  }
  for (auto k : writes) {
    CHECK(decide(session_mode::redis_read, redis_state::serving, true, k) == pg_then_copy);
    CHECK(decide(session_mode::redis_read, redis_state::degraded, false, k) == pg_noted);
    CHECK(decide(session_mode::redis_read, redis_state::returning, true, k) == pg_noted);
  }
}

TEST_CASE("redis-primary: everything on Redis; on PostgreSQL, noted, while degraded with the "
          "fallback and while returning; reject keeps it on Redis (503)") {
  for (auto k :
       {kind::get, kind::list_user, kind::put, kind::patch, kind::del, kind::revoke_user}) {
    CHECK(decide(session_mode::redis_primary, redis_state::serving, true, k) == redis);
    CHECK(decide(session_mode::redis_primary, redis_state::degraded, true, k) == pg_noted);
    CHECK(decide(session_mode::redis_primary, redis_state::degraded, false, k) == redis);
    CHECK(decide(session_mode::redis_primary, redis_state::returning, false, k) == pg_noted);
  }
}

TEST_CASE("mode names parse and print back") {
  for (auto m : {session_mode::postgres, session_mode::shadow, session_mode::redis_read,
                 session_mode::redis_primary})
    CHECK(parse_mode(to_string(m)) == m);
}

// --- which modes can run side by side (app/node_registry) ----------------------------------------

TEST_CASE("only the same mode, or shadow next to redis-read, can run side by side") {
  const char* modes[] = {"postgres", "shadow", "redis-read", "redis-primary"};
  for (const char* a : modes)
    for (const char* b : modes) {
      CAPTURE(a, b);
      bool safe = std::string_view(a) == b ||
                  (std::string_view(a) == "shadow" && std::string_view(b) == "redis-read") ||
                  (std::string_view(a) == "redis-read" && std::string_view(b) == "shadow");
      CHECK(modes_compatible(a, b) == safe);
    }
}

TEST_CASE("the node registry: live nodes of an incompatible mode conflict; itself, compatible, "
          "silent and forgotten nodes do not") {
  const std::int64_t now = 10'000'000;
  std::vector<std::pair<std::string, std::string>> entries{
      {"me", registry_value("redis-primary", now - 100'000)},        // itself, however old
      {"a", registry_value("redis-read", now - 2'000)},              // live, incompatible
      {"b", registry_value("redis-primary", now - 1'000)},           // live, same mode
      {"c", registry_value("postgres", now - registry_live_ms - 1)}, // silent: not live
      {"d", registry_value("shadow", now - registry_forget_ms - 1)}, // forgotten: delete
      {"e", "garbage"},                                              // unreadable: delete
      {"f", "redis-read 12x"},                                       // unreadable: delete
      {"g", registry_value("postgres", now - registry_live_ms)},     // live at the bound
  };
  auto view = read_registry(entries, "me", "redis-primary", now);
  REQUIRE(view.conflicting.size() == 2);
  CHECK(view.conflicting[0].node_id == "a");
  CHECK(view.conflicting[0].mode == "redis-read");
  CHECK(view.conflicting[0].seen_ms == now - 2'000);
  CHECK(view.conflicting[1].node_id == "g");
  CHECK(view.stale == std::vector<std::string>{"d", "e", "f"});
  // shadow next to redis-read is fine; postgres is not.
  auto shadow = read_registry(entries, "me", "shadow", now);
  REQUIRE(shadow.conflicting.size() == 2);
  CHECK(shadow.conflicting[0].node_id == "b");
  CHECK(shadow.conflicting[1].node_id == "g");

  auto line = conflict_message("redis-primary", view.conflicting, now, true);
  CHECK(line.rfind("sessions.mode = redis-primary cannot run next to live nodes in other modes: "
                   "a (redis-read, seen 2 s ago), g (postgres, seen 15 s ago);",
                   0) == 0);
  CHECK(line.find("sessions.mixed_modes = \"warn\"") != std::string::npos);
  CHECK(conflict_message("redis-primary", view.conflicting, now, false)
            .find("Stop the nodes in the mode not meant") != std::string::npos);
}
