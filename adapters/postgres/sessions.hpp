// The user_session table: batched, version-fenced upserts (one round trip per batch) and
// single-row loads for read-through.
#pragma once

#include "adapters/postgres/client.hpp"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace sessiond::postgres {

/// One session as the table holds it. Times are epoch milliseconds.
struct session_row {
  std::string session_id;
  std::string user_id;
  std::string data; ///< a JSON value as text (stored as jsonb, so it loads back normalized)
  std::int64_t version = 0;
  std::string status = "ACTIVE"; ///< "ACTIVE", "REVOKED" or "EXPIRED"
  bool is_active = true;
  std::int64_t created_at_ms = 0;
  std::int64_t last_activity_at_ms = 0;
  std::int64_t expires_at_ms = 0;
  std::int64_t revoked_at_ms = 0; ///< 0 = NULL (never revoked)
};

/// What upsert_sessions() sends for `rows`: one row per session_id, the one with the highest
/// version (on a tie, the later one in `rows`), ordered by session_id so that concurrent batches
/// lock rows in the same order and cannot deadlock each other.
std::vector<const session_row*> dedupe_batch(const std::vector<session_row>& rows);

/// Writes `rows` in ONE statement (INSERT … SELECT FROM unnest(arrays) ON CONFLICT DO UPDATE)
/// where a stored row is replaced only by a higher version, or by the same version with a later
/// last_activity_at (a pure TTL slide carries no new version), and never a row with a pending
/// note in session_redis_repair (written in PostgreSQL while Redis was unreachable, so newer
/// than what Redis holds; the note's owner puts it back into Redis first). Returns the rows written
/// (inserted or replaced) and appends their ids to `written_ids` when given; rows fenced off by
/// version and duplicates dropped by dedupe_batch() do not count, so a retried batch returns 0.
/// updated_at is the server's now().
///
/// The statement runs through fenced_write() (REPEATABLE READ, retried on 40001).
///
/// Throws pg_error: invalid_argument (empty session_id, unknown status, NUL byte: checked before
/// anything is sent), server_error (e.g. data that is not JSON, 22P02, or holds \u0000, 22P05:
/// the whole batch fails), connection_lost (outcome unknown: retrying is safe).
std::size_t upsert_sessions(client& c, const std::vector<session_row>& rows,
                            std::vector<std::string>* written_ids = nullptr);

/// The tail both write-behind upserts share (this one and bulk_upsert_sessions()): ON CONFLICT
/// … DO UPDATE with the version fence (a higher version, or the same version with a later
/// last_activity_at) and the guard for rows with a pending note in session_redis_repair
/// (written in PostgreSQL while Redis was unreachable, so newer than what Redis holds), then
/// RETURNING session_id. The INSERT before it names the rows `excluded` replaces.
extern const char* const upsert_fence_sql;

/// Checks a row before anything is sent: a session_id, a known status, no NUL byte in
/// session_id, user_id or data. Throws pg_error(invalid_argument) naming the session.
void validate_row(const session_row& r);

/// Runs `write` (one write-behind upsert) in a REPEATABLE READ transaction, retried up to 5
/// times when PostgreSQL reports a concurrent update (40001). Under READ COMMITTED a row written
/// and noted by a concurrent degraded write would be re-checked against its new version but the
/// note, in another table, against the statement's older snapshot, so Redis' older data could
/// replace the degraded write. Inside the caller's transaction it runs once, at its level.
result fenced_write(client& c, const std::function<result()>& write);

/// The rows a RETURNING session_id result holds; appends their ids to `written_ids` if given.
std::size_t written_rows(const result& res, std::vector<std::string>* written_ids);

/// The stored version and status of a session.
struct stored_version {
  std::string session_id;
  std::int64_t version = 0;
  std::string status;
  /// The session has a note in session_redis_repair: upsert_sessions() does not overwrite its
  /// row (whatever the versions) until the note is cleared.
  bool repair_pending = false;
};

/// The stored versions of those of `ids` that have a row, with their pending repair notes (one
/// statement).
std::vector<stored_version> load_versions(client& c, const std::vector<std::string>& ids);

/// The stored row of `session_id`, whatever its status; nullopt when there is none. NULL
/// timestamps load as 0.
std::optional<session_row> load_session(client& c, const std::string& session_id);

/// The live rows (ACTIVE, not expired at `now_ms`) of `user_id`, soonest expiry first, at most
/// `limit` (the user_id index).
std::vector<session_row> load_user_sessions(client& c, const std::string& user_id,
                                            std::int64_t now_ms, std::int64_t limit);

/// The select list of a session_row over `user_session u` (10 columns, times as epoch ms, data
/// as jsonb's text), for statements that load rows the way load_session() does.
extern const char* const session_row_columns;

/// The session_row in fields `first` … `first + 9` of a row selected with
/// session_row_columns. NULL times load as 0; throws pg_error(bad_reply) on a bad shape.
session_row parse_session_row(const std::vector<field>& fields, std::size_t first = 0);

} // namespace sessiond::postgres
