// Retention of user_session (no CAF): the deletion criterion, one run (advisory lock, batched
// DELETEs in short transactions, the audit row) and the pure daily-schedule arithmetic.
// docs/retention.md explains the choices.
#pragma once

#include "adapters/postgres/client.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace sessiond::postgres {

/// What one run does. Every bound is checked by run_retention (invalid_argument → failed).
struct retention_params {
  std::int64_t days = 60;                   ///< idle for longer than this many 24-hour days
  std::int64_t batch_size = 5000;           ///< rows per DELETE statement (one transaction each)
  std::chrono::milliseconds pause{100};     ///< between two batches (interrupted by cancellation)
  std::int64_t max_rows_per_run = 10000000; ///< the run stops once it deleted (counted) this many
  bool dry_run = false;                     ///< count what a run would delete, delete nothing
  std::string node_id;                      ///< written to the audit row
  std::string actor = "sessiond:retention"; ///< written to the audit row
  /// SET LOCAL in every batch: a batch never waits longer than this for a lock (say, behind a
  /// migration's ACCESS EXCLUSIVE) and never runs longer than the statement timeout.
  std::chrono::milliseconds lock_timeout{1000};
  std::chrono::milliseconds statement_timeout{10000};
  /// The statement timeout of the single count statement of a dry run (it holds no row locks).
  std::chrono::milliseconds count_statement_timeout{60000};
  /// Heap pages per statement of the sweep for rows the index range cannot reach (see .cpp).
  std::int64_t sweep_pages = 4096;
  /// Tests and the bench: evaluate `now()` as this instant (epoch microseconds) instead of the
  /// server's now(). Never later than the server's now(): a later value is clamped to it, so
  /// this cannot make a row eligible early.
  std::optional<std::int64_t> as_of_us;
};

enum class retention_status {
  ran,      ///< the run finished (deleted or, dry, counted every row it could, up to the max)
  skipped,  ///< another connection (node) holds the retention lock: nothing done, no audit row
  failed,   ///< stopped on an error or a cancellation; what it deleted stays deleted (audited)
  disabled, ///< retention.enabled is false (set by the actor; run_retention never returns it)
};
const char* to_string(retention_status s);

/// One batch (or sweep chunk, or dry-run count statement) as it finished.
struct retention_batch {
  bool sweep = false;                ///< true for the heap sweep, false for the index range
  std::int64_t rows = 0;             ///< deleted (dry run: counted) by this statement
  std::chrono::microseconds took{0}; ///< BEGIN … COMMIT, as the client saw it
};

/// Optional callbacks; both run on the calling thread.
struct retention_hooks {
  /// Polled before every batch and during pauses; true stops the run (status failed, error
  /// "cancelled"). The node sets it at shutdown.
  std::function<bool()> cancelled;
  /// After each committed batch (tests, the bench, metrics).
  std::function<void(const retention_batch&)> on_batch;
};

/// The outcome of one run; the actor's reply and the body of POST /v1/admin/retention.
struct retention_report {
  retention_status status = retention_status::failed;
  bool dry_run = false;
  /// Rows deleted; in a dry run, the rows a run would delete (capped at max_rows_per_run). The
  /// audit row's rows_deleted holds the same number.
  std::int64_t rows_deleted = 0;
  std::int64_t batches = 0;
  bool reached_max = false;     ///< stopped at max_rows_per_run; the rest waits for the next run
  std::int64_t started_ms = 0;  ///< epoch ms (the audit row's started_at when one was written)
  std::int64_t finished_ms = 0; ///< epoch ms
  std::int64_t duration_ms = 0;
  std::int64_t longest_batch_us = 0; ///< the longest single batch transaction
  std::int64_t as_of_us = 0;         ///< the instant the run used as now() (0 when skipped)
  std::int64_t days = 0;
  std::string criterion; ///< as written to the audit row
  std::string node_id;
  std::string error;         ///< empty unless failed
  std::int64_t audit_id = 0; ///< session_retention_audit.id; 0 when no row was written
};

/// The advisory lock key of the retention run on `user_session` as SQL: the ASCII of "rete" in
/// the high 32 bits and the table's oid in the low ones, so deployments in different schemas of
/// one database do not exclude each other while every node on one table does.
inline constexpr const char* retention_lock_key_sql =
    "((x'72657465'::bigint << 32) | 'user_session'::regclass::oid::bigint)";

/// The criterion in words-as-SQL, with `days` filled in: what the audit row records.
std::string retention_criterion(std::int64_t days);

/// One retention run on `c` (a connection of its own: the advisory lock is session-level and
/// the run changes session settings only with SET LOCAL). Blocks for the whole run.
///
/// Deletes (or, dry, counts) user_session rows with is_active = false AND status <> 'ACTIVE'
/// AND expires_at < now() AND coalesce(last_activity_at, created_at) < now() - days, where
/// now() is fixed once at the start of the run. Takes pg_try_advisory_lock first and returns
/// `skipped` when another session holds it. Otherwise writes one session_retention_audit row,
/// deletes in batches of batch_size, each its own transaction that also adds its count to the
/// audit row (so the row matches the rows gone even if the node dies), pauses between
/// batches, stops at max_rows_per_run or on cancellation, then sets finished_at (and error).
///
/// Never throws: every failure ends up in the report (status failed, error) and, when the audit
/// row exists, in the row (the client reconnects once to write it after a lost connection).
retention_report run_retention(client& c, const retention_params& p,
                               const retention_hooks& hooks = {});

/// EXPLAIN (ANALYZE, BUFFERS) of the first batch a run with `p` would execute (pass 1), as
/// plan text, inside a transaction that is rolled back: nothing is deleted, but the rows it
/// picks are locked for that long. For docs/retention.md, the bench and operators.
std::string explain_retention_batch(client& c, const retention_params& p);

/// True when session_retention_audit holds a run, of any node, that started at or after
/// `since_ms` (epoch ms) and did not fail (a run still going counts); dry runs count only when
/// `count_dry`. The retention actor's catch-up asks it at start-up about the last scheduled run.
/// Throws pg_error.
bool retention_ran_since(client& c, std::int64_t since_ms, bool count_dry);

/// Minutes after midnight of "HH:MM" (00:00–23:59, two digits each); nullopt otherwise.
std::optional<int> parse_hh_mm(std::string_view hh_mm);

/// The first instant strictly after `now_ms` (epoch ms) at which the UTC clock reads `hh_mm`:
/// today's when still ahead, else tomorrow's. Throws pg_error(invalid_argument) on a bad hh_mm.
std::int64_t next_retention_run_ms(std::string_view hh_mm, std::int64_t now_ms);

/// The last instant at or before `now_ms` at which the UTC clock read `hh_mm`: the scheduled run
/// a node that starts at `now_ms` may have missed. Throws like next_retention_run_ms().
std::int64_t last_retention_run_ms(std::string_view hh_mm, std::int64_t now_ms);

/// `us` (epoch microseconds) as a timestamptz literal in UTC, e.g. "2026-11-21 03:30:00.000001+00".
std::string timestamptz_literal(std::int64_t us);

} // namespace sessiond::postgres
