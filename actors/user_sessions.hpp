// A user's live sessions, for GET and DELETE /v1/users/{uid}/sessions. The user index lives in
// the user's slot and the sessions in theirs, so no script can read both: the listing reads the
// index (trimming ids too old to be live), and PostgreSQL's rows of the user (its user_id index:
// sessions Redis lost, or whose index add a node did not live to send), then each session once
// in Redis. A session counts when Redis holds it live for this user, or, when Redis has no key
// for it, when PostgreSQL holds it live. Without CAF: callbacks on Redis I/O threads or
// PostgreSQL workers.
#pragma once

#include "actors/shard_env.hpp"
#include "messages/session.hpp"
#include "model/session.hpp"

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace sessiond::actors {

struct user_listing {
  bool redis_failed = false; ///< the index or a session could not be read: `failure` says why
  messages::session_result failure;
  /// PostgreSQL was asked and did not answer (false when it answered or has no say).
  bool postgres_failed = false;
  std::vector<model::session> sessions; ///< soonest expiry first, at most max_user_sessions
  /// Of `sessions`, those PostgreSQL alone reported (no key in Redis).
  std::size_t from_postgres = 0;
  /// A session's data did not decrypt: a listing answers this 500 (naming the key id) rather
  /// than serve it; a revoke of them all still revokes every session (it needs no data).
  bool undecryptable = false;
  messages::session_result decrypt_failure;
};

/// Lists `uid`'s live sessions; `done` runs once, on an I/O or PostgreSQL worker thread.
void list_user_sessions(const std::shared_ptr<const shard_env>& env, const std::string& uid,
                        std::function<void(user_listing&&)> done);

} // namespace sessiond::actors
