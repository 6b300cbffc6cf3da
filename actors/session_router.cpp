// session_router: forwards per-session ops to the owning shard; lists and revokes a user's
// sessions (user_sessions.hpp: Redis's index and PostgreSQL's rows, each session read once,
// then one revoke per session through its shard).
#include "actors/session_router.hpp"

#include "actors/session_shard.hpp"
#include "actors/user_sessions.hpp"
#include "model/shard_for.hpp"

#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include <atomic>
#include <mutex>

namespace sessiond::actors {

using messages::redis_done;
using messages::session_op;
using messages::session_op_kind;
using messages::session_result;
using self_ptr = messages::router_actor::stateful_pointer<router_state>;

namespace {

/// Counts the revocations of one DELETE /v1/users/{uid}/sessions; answers when the last
/// per-session op is done (its completion released): 200 with the count when each session was
/// revoked or already gone (404); otherwise 503 saying how many are still live, so a client never
/// takes a partial "log out everywhere" for a whole one (the DELETE is idempotent: a retry
/// revokes the rest).
struct revoke_tally {
  std::atomic<std::int64_t> revoked{0};
  std::mutex mtx;
  std::int64_t failed = 0;    ///< guarded by mtx
  session_result first_error; ///< guarded by mtx: the first failure, for its detail
  messages::completion_ptr parent;
  bool postgres_unchecked = false;
  ~revoke_tally() {
    session_result r;
    if (failed == 0) {
      r.status = 200;
      r.count = revoked.load();
      if (postgres_unchecked)
        r.detail = "postgres_unchecked";
    } else {
      r.status = first_error.status == 503 ? 503 : 500;
      r.retry_after_s = first_error.retry_after_s;
      r.detail = std::to_string(failed) + " of the user's sessions were not confirmed revoked " +
                 "and may still be live (" + std::to_string(revoked.load()) +
                 " were revoked); retry the DELETE. First failure: " + first_error.detail;
    }
    parent->complete(std::move(r));
  }
};

class revoke_one : public messages::session_completion {
public:
  explicit revoke_one(std::shared_ptr<revoke_tally> t) : tally_(std::move(t)) {}

protected:
  void on_complete(session_result&& r) override {
    if (r.status == 204) {
      tally_->revoked.fetch_add(1);
    } else if (r.status != 404) { // 404: expired or revoked meanwhile, nothing left to do
      std::lock_guard<std::mutex> guard{tally_->mtx};
      if (tally_->failed++ == 0)
        tally_->first_error = std::move(r);
    }
  }

private:
  std::shared_ptr<revoke_tally> tally_;
};

void route(self_ptr self, session_op&& op) {
  auto& shards = self->state.shards;
  auto i = model::shard_for(op.id, shards.size());
  self->send(shards[i], std::move(op));
}

/// Revokes each listed session through the router (so through its shard, whose DELETE reads
/// PostgreSQL's row through when Redis lost the key). `postgres_unknown`: PostgreSQL could not
/// say which sessions it holds: the answer says so (postgres_checked: false) rather than failing,
/// so log-out-everywhere works while PostgreSQL is away; only a session Redis lost while
/// PostgreSQL was down too can escape it.
void revoke_all(messages::router_actor router, const session_op& op,
                std::vector<model::session> sessions, bool postgres_unknown) {
  auto tally = std::make_shared<revoke_tally>();
  tally->parent = op.done;
  tally->postgres_unchecked = postgres_unknown;
  for (auto& s : sessions) {
    session_op del;
    del.kind = session_op_kind::del;
    del.id = s.id;
    del.done = std::make_shared<revoke_one>(tally);
    caf::anon_send(router, std::move(del));
  }
}

void list_user(self_ptr self, session_op&& op) {
  auto handle = caf::actor_cast<messages::router_actor>(self);
  auto ptr = std::make_shared<session_op>(std::move(op));
  list_user_sessions(self->state.env, ptr->id, [handle, ptr](user_listing&& l) {
    if (l.redis_failed)
      return ptr->done->complete(std::move(l.failure));
    if (ptr->kind == session_op_kind::revoke_user)
      return revoke_all(handle, *ptr, std::move(l.sessions), l.postgres_failed);
    if (l.undecryptable)
      return ptr->done->complete(std::move(l.decrypt_failure));
    session_result r;
    r.status = 200;
    r.sessions = std::move(l.sessions);
    ptr->done->complete(std::move(r));
  });
}

} // namespace

messages::router_actor::behavior_type session_router(self_ptr self,
                                                     std::vector<messages::shard_actor> shards,
                                                     std::shared_ptr<const shard_env> env) {
  self->state.shards = std::move(shards);
  self->state.env = std::move(env);
  return {
      [=](session_op& op) {
        if (op.kind == session_op_kind::list_user || op.kind == session_op_kind::revoke_user)
          list_user(self, std::move(op));
        else
          route(self, std::move(op));
      },
      [=](messages::set_shard_atom, std::uint64_t i, messages::shard_actor& s) {
        if (i < self->state.shards.size())
          self->state.shards[i] = std::move(s);
      },
      [=](messages::get_shard_atom, std::uint64_t i) -> messages::shard_actor {
        return i < self->state.shards.size() ? self->state.shards[i] : messages::shard_actor{};
      },
  };
}

} // namespace sessiond::actors
