// session_shard: one actor per slice of session ids. GET, PUT and DELETE are one round trip
// each: start_single() sends them from the calling thread (the API's I/O thread, no actor hop) on
// a Redis connection of that thread, and the same thread completes them when the reply arrives.
// PATCH (read, merge, compare-and-set write) needs the actor: its commands go out on the shard's
// connection, it holds its key until done, and PATCHes on one key queue behind each other. Every
// write is one script that checks the version, so operations that race on a key are fenced
// whichever connection carries them.
#include "actors/session_shard.hpp"

#include "actors/layout_upgrade.hpp"
#include "model/merge_patch.hpp"

#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include <algorithm>
#include <charconv>
#include <functional>

namespace sessiond::actors {

using messages::redis_done;
using messages::session_op;
using messages::session_op_kind;
using messages::session_result;
using self_ptr = messages::shard_actor::stateful_pointer<shard_state>;
using op_ptr = std::shared_ptr<session_op>;

namespace {

constexpr int max_cas_attempts = 16; // each retry needs no read: a round trip, not two
constexpr const char* session_fields[] = {"v", "u", "st", "ca", "la", "ex", "ttl", "d", "t"};

std::int64_t to_int(const std::string& s) {
  std::int64_t v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v);
  return v;
}

std::int64_t reply_int(const redis::reply& r) {
  if (r.type == redis::reply::kind::integer)
    return r.integer;
  return to_int(r.str);
}

session_result status_only(unsigned status, std::string detail = {}) {
  session_result r;
  r.status = status;
  r.detail = std::move(detail);
  return r;
}

std::string condition_arg(const std::optional<model::etag_condition>& if_match,
                          const std::optional<model::etag_condition>& if_none_match) {
  if (if_none_match && if_none_match->any)
    return "n";
  if (if_match)
    return if_match->any ? "a" : "m" + std::to_string(if_match->version);
  return "";
}

session_result unavailable(const shard_env& env, const redis_done& d) {
  return redis_failure(env, d.error, d.value);
}

/// A reply handler that runs on the I/O thread: for the single-round-trip ops.
using io_handler = void (*)(const shard_env&, std::size_t, session_op&, redis_done&);

/// The callback that completes a single-round-trip op with its reply, on the I/O thread that
/// receives it (no actor hop back).
redis::callback complete_on_reply(const std::shared_ptr<const shard_env>& env, std::size_t index,
                                  const op_ptr& op, io_handler h) {
  return [env, index, op, h](redis::errc e, redis::reply&& r) {
    redis_done d{op, 0, e, std::move(r)};
    h(*env, index, *op, d);
  };
}

/// Sends a command for a single-round-trip op, on a Redis connection of the calling thread when
/// it has one (no hand-off between threads).
void send_direct(const std::shared_ptr<const shard_env>& env, std::size_t index, const op_ptr& op,
                 std::vector<std::string> args, io_handler h) {
  env->redis->command(env->redis->local_hint(index), std::move(args),
                      complete_on_reply(env, index, op, h));
}

/// A write script (revoke) sent from the calling thread; with redis.wait_replicas, WAIT follows.
void eval_direct(const std::shared_ptr<const shard_env>& env, std::size_t index, const op_ptr& op,
                 const redis::script& s, std::vector<std::string> keys,
                 std::vector<std::string> args, io_handler h) {
  env->write_eval(env->redis->local_hint(index), s, std::move(keys), std::move(args),
                  complete_on_reply(env, index, op, h));
}

/// Sends a command whose reply comes back to the shard as a redis_done message (PATCH).
void send_to_self(self_ptr self, const op_ptr& op, std::int64_t step,
                  std::vector<std::string> args) {
  auto handle = caf::actor_cast<messages::shard_actor>(self);
  self->state.env->redis->command(self->state.index, std::move(args),
                                  [handle, op, step](redis::errc e, redis::reply&& r) {
                                    caf::anon_send(handle, redis_done{op, step, e, std::move(r)});
                                  });
}

std::vector<std::string> read_args(const shard_env& env, const std::string& id) {
  return session_read_args(env.session_key(id));
}

bool key_missing(const redis::reply& r) {
  return r.type == redis::reply::kind::array && !r.elements.empty() &&
         r.elements[0].type == redis::reply::kind::nil;
}

/// After a Redis miss: asks PostgreSQL for the session (once per op). A live or revoked row goes
/// back into Redis (only if the key is still absent), then `again` runs on an I/O thread to
/// redo the op. False when there is no read-through or it cannot be taken now: the caller
/// answers the miss itself.
bool read_through(const shard_env& env, std::size_t index, const op_ptr& op,
                  std::function<void()> again);

upgrade_context upgrade_of(const shard_env& env) {
  return {env.redis, &env.scripts, env.keys, env.policy.max_lifetime_s * 1000};
}

/// After a miss in layout 2 while keys of layout 1 may exist: moves the session over (once per
/// op) and runs `again`, which redoes the op, on an I/O thread. False when there is nothing to
/// look at. A Redis failure redoes the op too: it fails the same way and answers 503.
bool look_in_legacy(const shard_env& env, std::size_t index, const op_ptr& op,
                    std::function<void()> again) {
  if (!env.legacy.load(std::memory_order_relaxed) || op->legacy_checked)
    return false;
  op->legacy_checked = true;
  const shard_env* e = &env;
  upgrade_session(upgrade_of(env), index, op->id, env.clock->now_ms(),
                  [e, index, op, again = std::move(again)](upgrade_outcome o) {
                    if (o == upgrade_outcome::absent && read_through(*e, index, op, again))
                      return;
                    again();
                  });
  return true;
}

bool read_through(const shard_env& env, std::size_t index, const op_ptr& op,
                  std::function<void()> again) {
  if (look_in_legacy(env, index, op, again))
    return true;
  if (!env.load_row || op->read_through)
    return false;
  op->read_through = true;
  env.counters.read_through.fetch_add(1, std::memory_order_relaxed);
  const shard_env* e = &env; // the node keeps the env alive until its PostgreSQL pool stopped
  return env.load_row(
      op->id, [e, index, op, again = std::move(again)](std::optional<postgres::session_row> row) {
        bool live = row && row->status == "ACTIVE" && row->expires_at_ms > e->clock->now_ms();
        bool revoked = row && row->status == "REVOKED";
        if (!live && !revoked)
          return again();
        e->redis->eval(index, e->scripts.restore, {e->session_key(op->id)}, e->row_args(*row),
                       [e, index, again, live, uid = row->user_id, id = op->id,
                        created = row->created_at_ms](redis::errc err, redis::reply&& r) {
                         if (err == redis::errc::ok && r.type == redis::reply::kind::integer &&
                             r.integer == 1) {
                           e->counters.restored.fetch_add(1, std::memory_order_relaxed);
                           if (live)
                             e->index_session(index, uid, id, created);
                         }
                         again();
                       });
      });
}

std::vector<std::string> write_keys(const shard_env& env, const std::string& id) {
  return {env.session_key(id), env.dirty_key(id)};
}

std::vector<std::string> write_args(const shard_env& env, const std::string& id,
                                    const std::string& user_id, const std::string& data,
                                    std::int64_t ttl_s, const std::string& cond, bool legacy,
                                    bool fields_on_conflict = false) {
  auto now = env.clock->now_ms();
  return {id,
          user_id,
          env.crypto->seal(id, data), // every write is sealed under the current key
          std::to_string(now),
          std::to_string(ttl_s),
          std::to_string(env.policy.max_lifetime_s),
          cond,
          std::to_string(model::expires_at(now, now, ttl_s, env.policy)),
          legacy ? "1" : "0",
          fields_on_conflict ? "1" : "0",
          env.crypto->known_ids()};
}

/// The 500 answer to a session whose stored data did not open; nothing is served or changed.
session_result undecryptable(const crypto::opened& o) {
  auto r = status_only(500, open_failure_detail(o));
  r.undecryptable = true;
  return r;
}

/// Slides the idle TTL after a read when due; sent on the shard's connection, so it reaches
/// Redis before any later command for the key. Fire-and-forget: the script's version check
/// makes a late or lost touch harmless.
void maybe_touch(const shard_env& env, std::size_t index, model::session& s) {
  auto now = env.clock->now_ms();
  if (!model::should_touch(s.created_ms, s.touch_ms, s.expires_ms, s.ttl_s, now, env.policy))
    return;
  auto ex = model::expires_at(s.created_ms, now, s.ttl_s, env.policy);
  env.counters.touches.fetch_add(1, std::memory_order_relaxed);
  env.redis->eval(index, env.scripts.touch, {env.session_key(s.id), env.dirty_key(s.id)},
                  {std::to_string(s.version), std::to_string(now), std::to_string(ex), s.id,
                   std::to_string(env.activity_interval_ms)},
                  [](redis::errc, redis::reply&&) {});
  s.last_activity_ms = now;
  s.touch_ms = now;
  s.expires_ms = ex;
  if (env.on_touch)
    env.on_touch(s);
}

/// Reads the session of an HMGET reply, its data opened; 404/412 results when it cannot be used,
/// 500 when its data does not decrypt (key missing, or not this session's value).
std::optional<session_result> check_read(const shard_env& env, const session_op& op,
                                         const redis::reply& r, model::session& s) {
  s.id = op.id;
  if (!parse_session_fields(r, s) || s.state != model::status::active ||
      model::expired(s.expires_ms, env.clock->now_ms()))
    return status_only(404, "no live session with this id");
  if (op.if_match && !op.if_match->any && op.if_match->version != s.version)
    return status_only(412, "the session is at version " + std::to_string(s.version));
  if (crypto::is_envelope(s.data)) {
    auto o = env.crypto->open(s.id, s.data);
    if (o.code != crypto::errc::ok)
      return undecryptable(o);
    s.data = std::move(o.plaintext);
  }
  return std::nullopt;
}

/// GET, on the I/O thread.
void on_get(const shard_env& env, std::size_t index, session_op& op, redis_done& d) {
  if (d.error != redis::errc::ok || d.value.is_error())
    return op.done->complete(unavailable(env, d));
  if (key_missing(d.value) && read_through(env, index, d.op, [e = &env, index, p = d.op] {
        e->redis->command(index, read_args(*e, p->id),
                          [e, index, p](redis::errc er, redis::reply&& r) {
                            redis_done again{p, 0, er, std::move(r)};
                            on_get(*e, index, *p, again);
                          });
      }))
    return;
  session_result res;
  if (auto err = check_read(env, op, d.value, res.session))
    return op.done->complete(std::move(*err));
  auto& s = res.session;
  if (op.if_none_match && (op.if_none_match->any || op.if_none_match->version == s.version)) {
    res.status = 304;
    return op.done->complete(std::move(res));
  }
  maybe_touch(env, index, s);
  res.status = 200;
  op.done->complete(std::move(res));
}

/// The write script's reply {code, version, created_ms, expires_ms, written_ms} as a result.
session_result written(const shard_env& env, session_op& op, const redis::reply& r) {
  if (r.type != redis::reply::kind::array || r.elements.size() < 2)
    return status_only(503, "unexpected reply from Redis");
  auto code = reply_int(r.elements[0]);
  auto version = reply_int(r.elements[1]);
  if (code == code_precondition_failed)
    return status_only(412, "the session is at version " + std::to_string(version));
  if (code == code_gone)
    return status_only(410, "this session id was revoked and cannot be reused");
  if (code == code_key_missing) {
    crypto::opened o;
    o.code = crypto::errc::key_missing;
    o.key_id = r.elements.size() > 2 ? r.elements[2].str : "";
    env.crypto->key_missing.fetch_add(1, std::memory_order_relaxed);
    return undecryptable(o);
  }
  if (code == code_not_found || r.elements.size() < 4)
    return status_only(404, "no live session with this id");
  session_result res;
  res.status = static_cast<unsigned>(code);
  auto& s = res.session;
  s.id = op.id;
  s.user_id = op.user_id;
  s.data = std::move(op.body);
  s.version = version;
  s.created_ms = reply_int(r.elements[2]);
  s.expires_ms = reply_int(r.elements[3]);
  s.last_activity_ms = s.touch_ms =
      r.elements.size() > 4 ? reply_int(r.elements[4]) : env.clock->now_ms();
  s.ttl_s = op.ttl_s.value_or(env.default_ttl_s);
  return res;
}

/// True when the write script asks for the user index to learn the session.
bool needs_index(const redis::reply& r) {
  return r.type == redis::reply::kind::array && r.elements.size() > 5 && r.elements[5].str == "1";
}

/// Completes a write; first adds the session to its user's index when the script says so
/// (created, or moved to another user), so a listing right after the answer finds it. A failed
/// add still answers the write: the session is stored, and the sync adds it again.
void complete_written(const shard_env& env, std::size_t index, const op_ptr& op,
                      const redis::reply& r, std::function<void(session_result&&)> finish) {
  auto res = written(env, *op, r);
  if (!needs_index(r) || res.status >= 300)
    return finish(std::move(res));
  auto now = env.clock->now_ms();
  auto created = res.session.created_ms;
  env.redis->eval(index, env.scripts.index_add, {env.user_key(op->user_id)},
                  {std::to_string(created), op->id, std::to_string(now),
                   std::to_string(created + env.policy.max_lifetime_s * 1000)},
                  [res = std::move(res), finish = std::move(finish)](
                      redis::errc, redis::reply&&) mutable { finish(std::move(res)); });
}

void send_put(const std::shared_ptr<const shard_env>& env, std::size_t index, const op_ptr& op);

/// PUT, on the I/O thread.
void on_put(const std::shared_ptr<const shard_env>& env, std::size_t index, const op_ptr& op,
            redis_done& d) {
  const auto& e = *env;
  if (d.error != redis::errc::ok || d.value.is_error())
    return op->done->complete(unavailable(e, d));
  const auto& r = d.value;
  if (r.type == redis::reply::kind::array && !r.elements.empty() &&
      reply_int(r.elements[0]) == code_absent) {
    op->legacy_checked = true;
    return upgrade_session(upgrade_of(e), index, op->id, e.clock->now_ms(),
                           [env, index, op](upgrade_outcome) { send_put(env, index, op); });
  }
  complete_written(e, index, op, r,
                   [op](session_result&& res) { op->done->complete(std::move(res)); });
}

void send_put(const std::shared_ptr<const shard_env>& env, std::size_t index, const op_ptr& op) {
  const auto& e = *env;
  bool legacy = e.legacy.load(std::memory_order_relaxed) && !op->legacy_checked;
  e.write_eval(e.redis->local_hint(index), e.scripts.write, write_keys(e, op->id),
               write_args(e, op->id, op->user_id, op->body, op->ttl_s.value_or(e.default_ttl_s),
                          condition_arg(op->if_match, op->if_none_match), legacy),
               [env, index, op](redis::errc er, redis::reply&& r) {
                 redis_done d{op, 0, er, std::move(r)};
                 on_put(env, index, op, d);
               });
}

std::vector<std::string> revoke_keys(const shard_env& env, const session_op& op) {
  return {env.session_key(op.id), env.dirty_key(op.id)};
}

std::vector<std::string> revoke_args(const shard_env& env, const session_op& op) {
  return {op.id, std::to_string(env.clock->now_ms()), std::to_string(env.tombstone_ttl_s * 1000),
          condition_arg(op.if_match, std::nullopt)};
}

/// DELETE, on the I/O thread.
void on_revoke(const shard_env& env, std::size_t index, session_op& op, redis_done& d) {
  if (d.error != redis::errc::ok || d.value.is_error())
    return op.done->complete(unavailable(env, d));
  const auto& r = d.value;
  if (r.type != redis::reply::kind::array || r.elements.size() < 2)
    return op.done->complete(status_only(503, "unexpected reply from Redis"));
  auto code = reply_int(r.elements[0]);
  bool missing = code == code_not_found && reply_int(r.elements[1]) == 0;
  if (missing && read_through(env, index, d.op, [e = &env, index, p = d.op] {
        e->write_eval(index, e->scripts.revoke, revoke_keys(*e, *p), revoke_args(*e, *p),
                      [e, index, p](redis::errc er, redis::reply&& r) {
                        redis_done again{p, 0, er, std::move(r)};
                        on_revoke(*e, index, *p, again);
                      });
      }))
    return;
  if (code == code_precondition_failed)
    return op.done->complete(
        status_only(412, "the session is at version " + std::to_string(reply_int(r.elements[1]))));
  if (code != 204)
    return op.done->complete(status_only(404, "no live session with this id"));
  session_result res;
  res.status = 204;
  res.session.version = reply_int(r.elements[1]);
  op.done->complete(std::move(res));
}

// --- PATCH: holds its key; its replies come back to the shard --------------------------------

void start_patch(self_ptr self, const op_ptr& op) {
  send_to_self(self, op, 0, read_args(*self->state.env, op->id));
}

/// Completes a PATCH, then starts the next PATCH queued on the same key.
void finish_patch(self_ptr self, const op_ptr& op, session_result&& r) {
  op->done->complete(std::move(r));
  auto& busy = self->state.busy;
  auto it = busy.find(op->id);
  if (it == busy.end())
    return;
  if (it->second.empty()) {
    busy.erase(it);
    return;
  }
  auto next = std::make_shared<session_op>(std::move(it->second.front()));
  it->second.pop_front();
  start_patch(self, next);
}

/// The read of a PATCH answered: merge and write with the version read as the condition.
void patch_read(self_ptr self, const op_ptr& op, const redis::reply& r) {
  const auto& env = *self->state.env;
  auto index = self->state.index;
  if (key_missing(r) &&
      read_through(env, index, op,
                   [e = &env, index, op, handle = caf::actor_cast<messages::shard_actor>(self)] {
                     e->redis->command(
                         index, read_args(*e, op->id),
                         [handle, op](redis::errc er, redis::reply&& r) {
                           caf::anon_send(handle, redis_done{op, 0, er, std::move(r)});
                         });
                   }))
    return;
  model::session s;
  if (auto err = check_read(env, *op, r, s))
    return finish_patch(self, op, std::move(*err));
  std::string merged;
  if (auto err = model::apply_merge_patch(s.data, op->patch, env.max_data_bytes, merged))
    return finish_patch(self, op, status_only(err->status, err->detail));
  auto handle = caf::actor_cast<messages::shard_actor>(self);
  env.write_eval(self->state.index, env.scripts.write, write_keys(env, op->id),
                 write_args(env, op->id, s.user_id, merged, s.ttl_s,
                            "m" + std::to_string(s.version), false, true),
                 [handle, op](redis::errc e, redis::reply&& r) {
                   caf::anon_send(handle, redis_done{op, 1, e, std::move(r)});
                 });
  op->user_id = s.user_id;
  op->ttl_s = s.ttl_s;
  op->body = std::move(merged);
}

void patch_written(self_ptr self, const op_ptr& op, const redis::reply& r) {
  bool lost_race = r.type == redis::reply::kind::array && !r.elements.empty() &&
                   reply_int(r.elements[0]) == code_precondition_failed;
  if (lost_race && !op->if_match && ++op->attempt < max_cas_attempts) {
    // Another node wrote between our read and our write: merge again on the new version, which
    // the script sent back. Without a second read the retry's write reaches Redis one round trip
    // after the loss, ahead of the winner's next PATCH (a read, then a write), so a PATCH does
    // not lose race after race to a node with a queue of them.
    self->state.env->counters.cas_retries.fetch_add(1, std::memory_order_relaxed);
    if (r.elements.size() == 3 && r.elements[2].type == redis::reply::kind::array)
      return patch_read(self, op, r.elements[2]);
    return start_patch(self, op);
  }
  // A PATCH keeps the session's user and never creates one: no index to write.
  finish_patch(self, op, written(*self->state.env, *op, r));
}

void on_patch_reply(self_ptr self, redis_done& d) {
  if (d.error != redis::errc::ok || d.value.is_error())
    return finish_patch(self, d.op, unavailable(*self->state.env, d));
  if (d.step == 0)
    patch_read(self, d.op, d.value);
  else
    patch_written(self, d.op, d.value);
}

void start(self_ptr self, session_op&& op) {
  if (start_single(self->state.env, self->state.index, op))
    return;
  if (op.kind != session_op_kind::patch)
    return op.done->complete(status_only(500, "operation not handled by a shard"));
  op.patch = op.body; // body becomes the merged data once written
  auto& busy = self->state.busy;
  if (auto it = busy.find(op.id); it != busy.end())
    return it->second.push_back(std::move(op));
  busy.emplace(op.id, std::deque<session_op>{});
  start_patch(self, std::make_shared<session_op>(std::move(op)));
}

} // namespace

bool start_single(const std::shared_ptr<const shard_env>& env, std::size_t index, session_op& op) {
  const auto& e = *env;
  switch (op.kind) {
  case session_op_kind::get: {
    auto args = read_args(e, op.id);
    send_direct(env, index, std::make_shared<session_op>(std::move(op)), std::move(args), on_get);
    return true;
  }
  case session_op_kind::put:
    send_put(env, index, std::make_shared<session_op>(std::move(op)));
    return true;
  case session_op_kind::del: {
    auto keys = revoke_keys(e, op);
    auto args = revoke_args(e, op);
    eval_direct(env, index, std::make_shared<session_op>(std::move(op)), e.scripts.revoke,
                std::move(keys), std::move(args), on_revoke);
    return true;
  }
  default:
    return false;
  }
}

namespace {

/// The detail of a 503 for an error reply. Redis at maxmemory (policy noeviction) refuses every
/// write script with "OOM command not allowed …" before it writes anything.
std::string redis_error_detail(const std::string& error) {
  if (error.compare(0, 4, "OOM ") == 0)
    return "Redis is out of memory (maxmemory reached) and refuses writes until memory is freed: "
           "nothing was changed; reads still work";
  return "Redis error: " + error;
}

} // namespace

session_result redis_failure(const shard_env& env, redis::errc e, const redis::reply& r) {
  env.counters.redis_failures.fetch_add(1, std::memory_order_relaxed);
  auto res = status_only(503, e != redis::errc::ok
                                  ? std::string("Redis unavailable: ") + redis::to_string(e)
                                  : redis_error_detail(r.str));
  res.retry_after_s = env.retry_after_s;
  return res;
}

std::vector<std::string> session_read_args(const std::string& key) {
  std::vector<std::string> args{"HMGET", key};
  args.insert(args.end(), std::begin(session_fields), std::end(session_fields));
  return args;
}

bool parse_session_fields(const redis::reply& r, model::session& out) {
  if (r.type != redis::reply::kind::array || r.elements.size() != 9)
    return false;
  const auto& f = r.elements;
  if (f[0].type != redis::reply::kind::string)
    return false;
  out.version = to_int(f[0].str);
  out.user_id = f[1].str;
  out.state = f[2].str == "A" ? model::status::active : model::status::revoked;
  out.created_ms = to_int(f[3].str);
  out.last_activity_ms = to_int(f[4].str);
  out.expires_ms = to_int(f[5].str);
  out.ttl_s = to_int(f[6].str);
  out.data = f[7].str.empty() ? "{}" : f[7].str;
  out.touch_ms = to_int(f[8].str);
  return out.version > 0;
}

messages::shard_actor::behavior_type session_shard(self_ptr self, std::size_t index,
                                                   std::shared_ptr<const shard_env> env) {
  self->state.index = index;
  self->state.env = std::move(env);
  return {
      [=](session_op& op) { start(self, std::move(op)); },
      [=](redis_done& d) { on_patch_reply(self, d); },
  };
}

} // namespace sessiond::actors
