// Integration tests of postgres::run_retention against the PostgreSQL at POSTGRES_URL: exactly
// the eligible rows go (at every boundary), the audit row, dry runs, the advisory lock, runs
// stopped part-way, timeouts, and session saves running at the same time.
#include "adapters/postgres/retention.hpp"
#include "adapters/postgres/sessions.hpp"
#include "tests/integration/retention_support.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <map>
#include <random>
#include <thread>

using namespace sessiond::test::retention;
using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

namespace {

retention_params small_params() {
  retention_params p;
  p.batch_size = 1000;
  p.pause = 0ms;
  p.node_id = "test-node";
  return p;
}

} // namespace

TEST_CASE("a run deletes exactly the rows meeting all four conditions, at every boundary, and "
          "leaves every other row as it was",
          "[retention]") {
  scratch_schema s;
  client c = s.migrated();
  // The run is given the instant the expectation is computed for (as_of): rows exactly at
  // now() or at now() - 60 days are then decided by the same instant on both sides, to the
  // microsecond, however long the test takes.
  std::int64_t t = server_now_us(c);
  REQUIRE(fill_grid(c, t, 60, 33) == 33 * 3072);
  snapshot_expected(c, t, 60);
  verdict before = compare(c);
  REQUIRE(before.rows >= 100000);
  REQUIRE(before.eligible > 0);
  REQUIRE(before.eligible < before.rows);

  retention_params p = small_params();
  p.as_of_us = t;
  p.batch_size = 700;
  p.sweep_pages = 64; // several slices of the heap for the sweep

  { // A dry run counts them and changes nothing.
    p.dry_run = true;
    auto r = run_retention(c, p);
    INFO(r.error);
    CHECK(r.status == retention_status::ran);
    CHECK(r.dry_run);
    CHECK(r.rows_deleted == before.eligible);
    verdict after = compare(c);
    CHECK(after.gone == 0);
    CHECK(after.changed == 0);
    auto a = audit(c, r.audit_id);
    CHECK(a.dry_run);
    CHECK(a.rows_deleted == before.eligible);
    CHECK(a.finished);
    CHECK_FALSE(a.error);
    p.dry_run = false;
  }

  { // A run deletes them, audits the count, and a second run finds nothing.
    auto r = run_retention(c, p);
    INFO(r.error);
    CHECK(r.status == retention_status::ran);
    CHECK(r.rows_deleted == before.eligible);
    CHECK(r.as_of_us == t);
    verdict after = compare(c);
    INFO(mismatches(c));
    CHECK(after.gone == before.eligible);
    CHECK(after.wrongly_gone == 0);
    CHECK(after.wrongly_kept == 0);
    CHECK(after.changed == 0);
    CHECK(after.extra == 0);

    auto a = audit(c, r.audit_id);
    CHECK(a.rows_deleted == after.gone);
    CHECK_FALSE(a.dry_run);
    CHECK(a.finished);
    CHECK_FALSE(a.error);
    CHECK(a.actor == "sessiond:retention");
    CHECK(a.node_id == "test-node");
    for (std::string part :
         {std::string("is_active = false"), std::string("status <> 'ACTIVE'"),
          std::string("expires_at < now()"),
          std::string("coalesce(last_activity_at, created_at) < now() - 60 days"),
          timestamptz_literal(t)})
      CHECK_THAT(a.criterion, Catch::Contains(part));

    // The boundaries themselves, spelled out (ids: g<r>-<active>-<status>-<e>-<c>-<l>, where
    // 3 = 1 µs before the boundary, 4 = exactly at it, 5 = 1 µs after, 0 = NULL).
    CHECK_FALSE(exists(c, "g1-1-1-3-3-0")); // all four hold by 1 µs: gone
    CHECK(exists(c, "g1-1-1-4-3-0"));       // expires exactly now(): kept
    CHECK(exists(c, "g1-1-1-3-4-0"));       // created exactly now() - 60 days: kept
    CHECK(exists(c, "g1-1-1-3-5-0"));       // created 1 µs after it: kept
    CHECK(exists(c, "g1-1-1-3-3-4"));       // last activity exactly at it: kept
    CHECK_FALSE(exists(c, "g1-1-1-3-5-3")); // last activity before, created after: gone
    CHECK_FALSE(exists(c, "g1-1-1-3-0-3")); // created NULL, last activity before: gone
    CHECK(exists(c, "g1-1-1-3-0-0"));       // both NULL: kept
    CHECK(exists(c, "g1-1-1-0-3-3"));       // expires NULL: kept
    CHECK(exists(c, "g1-0-1-3-3-3"));       // is_active true: kept
    CHECK(exists(c, "g1-1-0-3-3-3"));       // status ACTIVE: kept
    CHECK_FALSE(exists(c, "g1-1-2-2-2-2")); // EXPIRED, a second before everywhere: gone

    auto again = run_retention(c, p);
    CHECK(again.status == retention_status::ran);
    CHECK(again.rows_deleted == 0);
    CHECK(compare(c).gone == before.eligible);
  }
}

TEST_CASE("NULL is_active or status cannot be stored, so the criterion never meets one",
          "[retention]") {
  scratch_schema s;
  client c = s.migrated();
  for (const char* sql :
       {"insert into user_session (session_id, user_id, data, version, status, is_active) values "
        "('n1', 'u', '{}', 1, null, false)",
        "insert into user_session (session_id, user_id, data, version, status, is_active) values "
        "('n2', 'u', '{}', 1, 'REVOKED', null)"}) {
    try {
      c.exec(sql);
      FAIL("a NULL was accepted: " << sql);
    } catch (const pg_error& e) {
      CHECK(e.sqlstate() == "23502"); // not_null_violation
    }
  }
}

TEST_CASE("without as_of a run uses the server's now(); a later as_of is clamped to it",
          "[retention]") {
  scratch_schema s;
  client c = s.migrated();
  // Margins of 10 s / 10 min around the real now(): the test runs well within them, and a row
  // only ever becomes eligible as time passes, never the other way round.
  c.exec(R"(
insert into user_session (session_id, user_id, data, version, status, is_active, created_at,
                          last_activity_at, expires_at)
values
  ('x1', 'u', '{}', 1, 'REVOKED', false, now() - interval '61 days', null, now() - interval '10 s'),
  ('x2', 'u', '{}', 1, 'REVOKED', false, now() - interval '61 days', null, now() + interval '10 min'),
  ('x3', 'u', '{}', 1, 'REVOKED', false, now() - interval '60 days' + interval '10 min', null,
   now() - interval '1 day'),
  ('x4', 'u', '{}', 1, 'EXPIRED', false, now() - interval '60 days' - interval '10 s', null,
   now() - interval '1 day'))");
  auto p = small_params();
  p.as_of_us = server_now_us(c) + 86'400'000'000; // a day ahead: must not delete x2 or x3
  auto clamped = run_retention(c, p);
  CHECK(clamped.status == retention_status::ran);
  CHECK(clamped.as_of_us <= server_now_us(c));
  CHECK(clamped.rows_deleted == 2);
  CHECK_FALSE(exists(c, "x1"));
  CHECK(exists(c, "x2"));
  CHECK(exists(c, "x3"));
  CHECK_FALSE(exists(c, "x4"));

  p.as_of_us.reset();
  auto r = run_retention(c, p);
  CHECK(r.status == retention_status::ran);
  CHECK(r.rows_deleted == 0);
  CHECK(std::abs(r.as_of_us - server_now_us(c)) < 60'000'000);
}

TEST_CASE("a run while another holds the retention lock skips: no rows, no audit row",
          "[retention]") {
  scratch_schema s;
  client a = s.migrated();
  client b = s.connect();
  fill_simple(a, 3000);
  auto p = small_params();
  retention_report second;
  retention_hooks h;
  h.on_batch = [&](const retention_batch&) {
    if (second.started_ms == 0) // while the first run holds the lock, between its batches
      second = run_retention(b, p);
  };
  auto first = run_retention(a, p, h);
  CHECK(first.status == retention_status::ran);
  CHECK(first.rows_deleted == 3000);
  CHECK(second.status == retention_status::skipped);
  CHECK(second.rows_deleted == 0);
  CHECK(second.audit_id == 0);
  CHECK(count(a, "select count(*) from session_retention_audit") == 1);
  // The lock is released at the end: the next run on the other connection runs.
  CHECK(run_retention(b, p).status == retention_status::ran);
}

TEST_CASE("a run cancelled between batches leaves whole batches gone, audited, and the next "
          "run finishes",
          "[retention]") {
  scratch_schema s;
  client c = s.migrated();
  fill_simple(c, 5000);
  auto p = small_params();
  int batches = 0;
  retention_hooks h;
  h.on_batch = [&](const retention_batch&) { ++batches; };
  h.cancelled = [&] { return batches >= 3; };
  auto r = run_retention(c, p, h);
  CHECK(r.status == retention_status::failed);
  CHECK_THAT(r.error, Catch::Contains("cancelled"));
  CHECK(r.rows_deleted == 3000);
  CHECK(remaining(c, "e") == 2000);
  // Batches go oldest first: e1…e3000 are the ones gone.
  CHECK(count(c, "select min(substr(session_id, 2)::int) from user_session where session_id "
                 "like 'e%'") == 3001);
  auto a = audit(c, r.audit_id);
  CHECK(a.rows_deleted == 3000);
  CHECK(a.finished);
  CHECK(a.error);

  auto next = run_retention(c, p);
  CHECK(next.status == retention_status::ran);
  CHECK(next.rows_deleted == 2000);
  CHECK(remaining(c, "e") == 0);
  CHECK(remaining(c, "a") == 5000);
  CHECK(count(c, "select sum(rows_deleted) from session_retention_audit") == 5000);
}

TEST_CASE("a run whose connection is killed inside a batch loses only that batch; the audit "
          "row says so and the next run finishes",
          "[retention]") {
  scratch_schema s;
  client c = s.migrated();
  client locker = s.connect();
  client killer = s.connect();
  fill_simple(c, 5000);
  auto p = small_params();
  p.lock_timeout = 30s; // the third batch waits on the audit row the test locks
  int pid = c.backend_pid();
  std::atomic<bool> locked{false};
  int batches = 0;
  retention_hooks h;
  h.on_batch = [&](const retention_batch&) {
    if (++batches == 2) {
      locker.exec("begin");
      locker.exec("select 1 from session_retention_audit for update");
      locked = true;
    }
  };
  retention_report r;
  std::thread run([&] { r = run_retention(c, p, h); });
  auto deadline = steady::now() + 20s;
  while (!locked && steady::now() < deadline)
    std::this_thread::sleep_for(1ms);
  // Wait until the third batch has deleted its rows and blocks on the audit row, then kill it.
  while (steady::now() < deadline &&
         scalar(killer, "select coalesce(wait_event_type, '') from pg_stat_activity where pid = $1",
                {std::to_string(pid)}) != "Lock")
    std::this_thread::sleep_for(2ms);
  CHECK(scalar(killer, "select pg_terminate_backend($1)", {std::to_string(pid)}) == "t");
  locker.exec("rollback");
  run.join();
  CHECK(r.status == retention_status::failed);
  CHECK(r.rows_deleted == 2000);
  CHECK(remaining(c, "e") == 3000);
  auto a = audit(c, r.audit_id);
  CHECK(a.rows_deleted == 2000);
  CHECK(a.finished);
  REQUIRE(a.error);
  CHECK_THAT(*a.error, Catch::Contains("connection_lost"));

  auto next = run_retention(c, p);
  CHECK(next.status == retention_status::ran);
  CHECK(next.rows_deleted == 3000);
  CHECK(remaining(c, "e") == 0);
  CHECK(remaining(c, "a") == 5000);
}

TEST_CASE("a run stops at max_rows_per_run and the next one carries on", "[retention]") {
  scratch_schema s;
  client c = s.migrated();
  fill_simple(c, 3000);
  auto p = small_params();
  p.max_rows_per_run = 2500;
  auto r = run_retention(c, p);
  CHECK(r.status == retention_status::ran);
  CHECK(r.reached_max);
  CHECK(r.rows_deleted == 2500);
  CHECK(r.batches == 3); // 1000, 1000, 500
  CHECK(remaining(c, "e") == 500);
  p.dry_run = true;
  auto dry = run_retention(c, p);
  CHECK(dry.rows_deleted == 500);
  CHECK_FALSE(dry.reached_max);
  p.dry_run = false;
  auto next = run_retention(c, p);
  CHECK(next.rows_deleted == 500);
  CHECK_FALSE(next.reached_max);
  CHECK(remaining(c, "e") == 0);
}

TEST_CASE("a batch waits at most lock_timeout for the table; the failed run is audited",
          "[retention]") {
  scratch_schema s;
  client c = s.migrated();
  client locker = s.connect();
  fill_simple(c, 100);
  locker.exec("begin");
  locker.exec("lock table user_session in access exclusive mode"); // as a migration would
  auto p = small_params();
  p.lock_timeout = 200ms;
  auto t0 = steady::now();
  auto r = run_retention(c, p);
  auto took = steady::now() - t0;
  locker.exec("rollback");
  CHECK(r.status == retention_status::failed);
  CHECK_THAT(r.error, Catch::Contains("55P03")); // lock_not_available
  CHECK(took < 5s);
  auto a = audit(c, r.audit_id);
  CHECK(a.rows_deleted == 0);
  CHECK(a.finished);
  CHECK(a.error);
  CHECK(remaining(c, "e") == 100);
}

TEST_CASE("session saves during a run lose nothing and wait at most about one batch",
          "[retention]") {
  scratch_schema s;
  client c = s.migrated();
  client w = s.connect();
  const int n = 20000;
  fill_simple(c, n);
  auto p = small_params();
  p.batch_size = 500;
  p.pause = 10ms;
  std::atomic<bool> done{false};
  retention_report r;
  std::thread run([&] {
    r = run_retention(c, p);
    done = true;
  });

  // Saves of sessions retention is deleting right now (they come back to life: version 2 and
  // up, ACTIVE), of active sessions, and of new ones, in batches of 30, as the sync would.
  std::mt19937 rng(42);
  std::map<std::string, std::int64_t> version;
  double max_save_ms = 0;
  int saves = 0;
  auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count();
  while (!done) {
    std::vector<session_row> batch;
    for (int i = 0; i < 30; ++i) {
      std::string id = i < 10   ? "e" + std::to_string(1 + rng() % n)
                       : i < 20 ? "a" + std::to_string(1 + rng() % n)
                                : "n" + std::to_string(saves * 10 + i);
      session_row row;
      row.session_id = id;
      row.user_id = "u";
      row.data = R"({"saved": true})";
      row.version = version[id] = std::max<std::int64_t>(version[id], 1) + 1;
      row.created_at_ms = now_ms - 1000;
      row.last_activity_at_ms = now_ms;
      row.expires_at_ms = now_ms + 3'600'000;
      batch.push_back(row);
    }
    auto t0 = steady::now();
    upsert_sessions(w, batch);
    max_save_ms = std::max(max_save_ms,
                           std::chrono::duration<double, std::milli>(steady::now() - t0).count());
    ++saves;
  }
  run.join();
  REQUIRE(r.status == retention_status::ran);
  INFO("saves " << saves << ", longest save " << max_save_ms << " ms, longest batch "
                << r.longest_batch_us / 1000.0 << " ms, run " << r.duration_ms << " ms");
  CHECK(saves >= 10);
  // Every save survived with its version and its ACTIVE state.
  std::size_t lost = 0;
  for (const auto& [id, v] : version) {
    auto row = load_session(w, id);
    if (!row || row->version != v || !row->is_active)
      ++lost;
  }
  CHECK(lost == 0);
  // The rows nobody saved are gone: n eligible minus the ones brought back.
  long long revived = std::count_if(version.begin(), version.end(),
                                    [](const auto& kv) { return kv.first[0] == 'e'; });
  CHECK(remaining(c, "e") == revived);
  CHECK(r.rows_deleted >= n - revived); // a row deleted, then saved again, counts too
  CHECK(r.rows_deleted <= n);
  // A save waits at most for the batch holding its row: far less than the run, and about one
  // batch (the slack covers a save's own time on a busy 2-core machine).
  CHECK(max_save_ms < r.longest_batch_us / 1000.0 + 250);
  CHECK(max_save_ms < r.duration_ms / 2.0);
}
