// The write-behind's upsert: a batch of sessions COPYed (binary format) into a temporary table,
// then written to user_session by one INSERT … SELECT … ON CONFLICT statement, in one
// transaction. Same rules and result as upsert_sessions(), less work per row on both sides.
#pragma once

#include "adapters/postgres/client.hpp"
#include "adapters/postgres/sessions.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace sessiond::postgres {

/// The COPY input (PostgreSQL's binary COPY format) for `rows`, in their order, with the columns
/// of the staging table: session_id, user_id, data (jsonb), version, status, is_active,
/// created_at, last_activity_at, expires_at, revoked_at (0 = NULL). Throws
/// pg_error(invalid_argument) on a row upsert_sessions() would refuse, or a time out of range.
std::string copy_binary(const std::vector<const session_row*>& rows);

/// Writes `rows` like upsert_sessions(): a stored row is replaced only by a higher version, or by
/// the same version with a later last_activity_at, and never while the session has a note in
/// session_redis_repair; one row per session_id (dedupe_batch()), taken in session_id byte
/// order; updated_at is the server's now(). Returns the rows written and appends their ids to
/// `written_ids` when given. Six round trips (BEGIN, SET TRANSACTION, COPY and its data, INSERT,
/// COMMIT) whatever the batch size; the staging table is the connection's own (`on commit delete
/// rows`), created on first use after every connect. Runs through fenced_write() (REPEATABLE READ,
/// retried on 40001), as upsert_sessions() does.
///
/// Throws pg_error like upsert_sessions(): invalid_argument (checked before anything is sent),
/// server_error (e.g. data that is not JSON: the whole batch fails, nothing is written),
/// connection_lost (outcome unknown: retrying is safe).
std::size_t bulk_upsert_sessions(client& c, const std::vector<session_row>& rows,
                                 std::vector<std::string>* written_ids = nullptr);

} // namespace sessiond::postgres
