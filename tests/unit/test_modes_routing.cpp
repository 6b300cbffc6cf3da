// The routing table of sessions.mode and the Redis fallback (docs/modes.md), pinned case by case:
// which store serves each operation, when a write is copied into Redis, when it is noted for
// put-back.
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
