// The session API served by PostgreSQL alone: the `postgres`, `shadow` and `redis-read` modes
// write here first, and a `redis-primary` node whose Redis is unreachable serves from here
// (degraded). Every operation is one short transaction on the user_session table with the same
// rules as the Redis scripts: versions only grow, If-Match / If-None-Match, idle TTL capped by
// the max lifetime, versioned tombstones. Blocking; no CAF.
#pragma once

#include "adapters/postgres/client.hpp"
#include "adapters/postgres/sessions.hpp"
#include "model/session.hpp"
#include "model/ttl.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace sessiond::postgres {

struct store_settings {
  model::ttl_policy policy;
  std::int64_t default_ttl_s = 3600;
  std::int64_t tombstone_ttl_s = 604800; ///< a revoked id cannot be reused for this long
  std::size_t max_data_bytes = 65536;    ///< a PATCH result larger than this: 413
  std::int64_t max_user_sessions = 1000; ///< list_user returns at most this many
  /// Degraded serving: every write (and TTL slide) also notes the session in
  /// session_redis_repair, in the same transaction, so Redis is repaired when it is back.
  bool note_repairs = false;
};

/// The outcome of one operation. `status` is the HTTP status of the contract: 200, 201, 204,
/// 304, 404, 410, 412, 413, 422.
struct store_result {
  unsigned status = 500;
  model::session session;               ///< get/put/patch (and version for delete)
  std::vector<model::session> sessions; ///< list_user
  std::int64_t count = 0;               ///< revoke_user
  std::string detail;                   ///< the problem detail of a 4xx
  /// The rows as stored by this operation (a write, a TTL slide, each revocation), for the
  /// caller that mirrors them into Redis; `data` compact, as Redis holds it. Empty when
  /// nothing was written.
  std::vector<session_row> written;
};

/// A precondition as the API parsed it.
struct store_condition {
  std::optional<model::etag_condition> if_match;
  std::optional<model::etag_condition> if_none_match;
};

/// One session operation per call, each one short transaction (writes lock their row with
/// SELECT … FOR UPDATE). `now_ms` is the caller's clock (injected in tests). `data` in results
/// is compact JSON text, the bytes Redis holds. A session's idle TTL, not a column, is
/// ceil((expires_at - last_activity_at) / 1 s) clamped to [1, max_lifetime_s]. Throws pg_error
/// when PostgreSQL fails (connection_lost: the outcome is unknown). Thread-safe over separate
/// clients (it holds only settings).
class session_store {
public:
  explicit session_store(store_settings s) : s_(std::move(s)) {}

  /// GET: 200 with the live session (and a TTL slide when due: should_touch), 304 when
  /// If-None-Match matches, 412 when If-Match does not, 404 when absent, revoked or expired.
  store_result get(client& c, const std::string& id, const store_condition& cond,
                   std::int64_t now_ms) const;
  /// PUT: 201 created, 200 replaced, 412 precondition failed ("the session is at version N";
  /// If-Match on an absent id: "no live session with this id"), 410 revoked (within the
  /// tombstone TTL), 404 past the max lifetime. An expired or long-revoked row is replaced as a
  /// new session at its version + 1 (versions never go back). Two concurrent first PUTs of an
  /// id: one creates (1), the other replaces (2). `ttl_s` empty: default_ttl_s.
  store_result put(client& c, const std::string& id, const std::string& user_id,
                   const std::string& data, std::optional<std::int64_t> ttl_s,
                   const store_condition& cond, std::int64_t now_ms) const;
  /// PATCH (RFC 7396) of a live session: 200, 400/413/422 from the merge, 404, 412.
  store_result patch(client& c, const std::string& id, const std::string& merge_patch,
                     const store_condition& cond, std::int64_t now_ms) const;
  /// DELETE: 204 with the tombstone's version, 404 when absent or already revoked, 412.
  store_result revoke(client& c, const std::string& id, const store_condition& cond,
                      std::int64_t now_ms) const;
  /// The user's live sessions, soonest expiry first, at most max_user_sessions: 200.
  store_result list_user(client& c, const std::string& user_id, std::int64_t now_ms) const;
  /// Revokes every live session of the user (not bounded by max_user_sessions): 200 with
  /// count.
  store_result revoke_user(client& c, const std::string& user_id, std::int64_t now_ms) const;

  const store_settings& settings() const { return s_; }

private:
  store_settings s_;
};

/// A session written while Redis was unreachable, still to be put back into Redis.
struct pending_repair {
  std::string session_id;
  std::int64_t version = 0;       ///< the version noted (the row may be newer)
  std::optional<session_row> row; ///< the row now (nullopt: deleted since, e.g. retention)
};

/// Notes `session_id` at `version` for put-back (as note_repairs does inside a write): for a
/// row written in PostgreSQL whose copy into Redis failed.
void note_repair(client& c, const std::string& session_id, std::int64_t version);
/// Slides a live session's idle TTL to the given times if it is still at `version` and its
/// stored activity is older (redis-read: a read slid it in Redis). True when a row changed.
bool slide_session(client& c, const std::string& session_id, std::int64_t version,
                   std::int64_t last_activity_ms, std::int64_t expires_ms);
/// The oldest `limit` notes of session_redis_repair with their rows (one statement).
std::vector<pending_repair> load_repairs(client& c, std::size_t limit);
/// Removes the note of `session_id` if it is still at `version` or lower (a newer write noted
/// it again: kept). Returns true when removed.
bool clear_repair(client& c, const std::string& session_id, std::int64_t version);
/// clear_repair for many notes in one statement (each removed only if still at its version or
/// lower). Returns how many were removed.
std::int64_t clear_repairs(client& c, const std::vector<pending_repair>& notes);
/// How many notes are pending.
std::int64_t count_repairs(client& c);

} // namespace sessiond::postgres
