// The session shard and router interfaces: the operations the HTTP API sends and how their
// results come back. Results travel through a `session_completion`, not an actor reply, because
// the sender is an HTTP connection, not an actor.
#pragma once

#include "adapters/redis/client.hpp"
#include "model/session.hpp"

#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/atom.hpp>
#include <caf/fwd.hpp>
#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace sessiond::messages {

enum class session_op_kind { get, put, patch, del, list_user, revoke_user };
inline const char* to_string(session_op_kind k) {
  switch (k) {
  case session_op_kind::get:
    return "get";
  case session_op_kind::put:
    return "put";
  case session_op_kind::patch:
    return "patch";
  case session_op_kind::del:
    return "delete";
  case session_op_kind::list_user:
    return "list_user";
  case session_op_kind::revoke_user:
    return "revoke_user";
  }
  return "unknown";
}

/// The outcome of one session operation. `status` is an HTTP status: 200, 201, 204, 304, 404,
/// 410, 412, 413, 422, 500 (undecryptable data), 503.
struct session_result {
  unsigned status = 503;
  model::session session;               ///< for get/put/patch
  std::vector<model::session> sessions; ///< for list_user
  std::int64_t count = 0;               ///< for revoke_user
  std::string detail;                   ///< problem detail for 4xx/5xx
  std::int64_t retry_after_s = 0;       ///< set with 503
  bool undecryptable = false;           ///< a 500 because the stored data did not decrypt
};

/// Receives the result of one operation exactly once, on any thread. Destroyed without a
/// result (the shard that held it died), it completes with 503 so no request hangs.
class session_completion {
public:
  virtual ~session_completion() = default;
  /// Only the first call counts.
  void complete(session_result&& r) {
    if (!done_.exchange(true))
      on_complete(std::move(r));
  }

protected:
  /// Called by subclasses' destructors: answers 503 when nothing was sent.
  void complete_if_pending() {
    if (!done_.load()) {
      session_result r;
      r.status = 503;
      r.detail = "the session shard handling this request stopped; retry";
      r.retry_after_s = 1;
      complete(std::move(r));
    }
  }
  virtual void on_complete(session_result&& r) = 0;

private:
  std::atomic<bool> done_{false};
};
using completion_ptr = std::shared_ptr<session_completion>;

/// One operation on one session (or one user's sessions), as the API parsed it.
struct session_op {
  session_op_kind kind = session_op_kind::get;
  std::string id;      ///< session id (user id for list_user / revoke_user)
  std::string user_id; ///< put
  std::string body;    ///< put: data JSON; patch: merge patch JSON, then the merged data written
  std::string patch;   ///< patch: the merge patch as sent, applied again by each retry
  std::optional<std::int64_t> ttl_s;
  std::optional<model::etag_condition> if_match;
  std::optional<model::etag_condition> if_none_match;
  std::int64_t attempt = 0;    ///< compare-and-set retries so far (another node won the race)
  bool read_through = false;   ///< PostgreSQL was already asked after a Redis miss
  bool legacy_checked = false; ///< layout 1 was already looked at after a Redis miss
  completion_ptr done;
};

/// A Redis reply coming back to the shard that sent the command, with the op it belongs to.
struct redis_done {
  std::shared_ptr<session_op> op;
  std::int64_t step = 0; ///< which step of the op the reply answers
  redis::errc error = redis::errc::ok;
  redis::reply value;
};

using get_shard_atom = caf::atom_constant<caf::atom("getshard")>;
using set_shard_atom = caf::atom_constant<caf::atom("setshard")>;

/// Runs the PATCHes of one slice of the session ids in arrival order per key (one in flight per
/// key, the rest queued behind it). The API sends GET, PUT and DELETE without it
/// (actors::start_single); a shard given one runs it the same way.
using shard_actor = caf::typed_actor<
    // Start (or queue behind the key's current op) one session operation.
    caf::reacts_to<session_op>,
    // A Redis reply for an op this shard started.
    caf::reacts_to<redis_done>>;

/// Maps a session id to its shard with model::shard_for and forwards; runs user-wide
/// operations (list, revoke all) by fanning out to the shards.
using router_actor = caf::typed_actor<
    // Route one operation to the shard that owns op.id (user-wide ops: handled here).
    caf::reacts_to<session_op>,
    // The supervisor installs a (re)started shard at an index.
    caf::reacts_to<set_shard_atom, std::uint64_t, shard_actor>,
    // The current handle of shard i (tests and diagnostics).
    caf::replies_to<get_shard_atom, std::uint64_t>::with<shard_actor>>;

} // namespace sessiond::messages

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(sessiond::messages::session_op)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(sessiond::messages::redis_done)
