// session_shard: one actor per slice of session ids. Operations on one key run one at a time in
// arrival order; each step is one Redis round trip whose reply comes back as a redis_done message.
#include "actors/session_shard.hpp"

#include "model/merge_patch.hpp"

#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include <charconv>

namespace sessiond::actors {

using messages::redis_done;
using messages::session_op;
using messages::session_op_kind;
using messages::session_result;
using self_ptr = messages::shard_actor::stateful_pointer<shard_state>;
using op_ptr = std::shared_ptr<session_op>;

namespace {

constexpr int max_cas_attempts = 8;
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

void send_redis(self_ptr self, const op_ptr& op, std::int64_t step,
                std::vector<std::string> args) {
  auto handle = caf::actor_cast<messages::shard_actor>(self);
  self->state.env->redis->command(
    self->state.index, std::move(args), [handle, op, step](redis::errc e, redis::reply&& r) {
      caf::anon_send(handle, redis_done{op, step, e, std::move(r)});
    });
}

void eval_redis(self_ptr self, const op_ptr& op, std::int64_t step, const redis::script& s,
                std::vector<std::string> keys, std::vector<std::string> args) {
  auto handle = caf::actor_cast<messages::shard_actor>(self);
  self->state.env->redis->eval(
    self->state.index, s, std::move(keys), std::move(args),
    [handle, op, step](redis::errc e, redis::reply&& r) {
      caf::anon_send(handle, redis_done{op, step, e, std::move(r)});
    });
}

void start(self_ptr self, const op_ptr& op);

/// Completes the op, then starts the next one queued on the same key.
void finish(self_ptr self, const op_ptr& op, session_result&& r) {
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
  start(self, next);
}

void read_session(self_ptr self, const op_ptr& op) {
  std::vector<std::string> args{"HMGET", self->state.env->session_key(op->id)};
  args.insert(args.end(), std::begin(session_fields), std::end(session_fields));
  send_redis(self, op, 0, std::move(args));
}

void write_session(self_ptr self, const op_ptr& op, std::int64_t step, const std::string& user_id,
                   const std::string& data, std::int64_t ttl_s, const std::string& cond) {
  const auto& env = *self->state.env;
  auto now = env.clock->now_ms();
  eval_redis(self, op, step, env.scripts.write,
             {env.session_key(op->id), env.user_key(user_id), env.dirty_key(self->state.index)},
             {op->id, user_id, data, std::to_string(now), std::to_string(ttl_s),
              std::to_string(env.policy.max_lifetime_s), cond, env.prefix + "u:"});
}

void start(self_ptr self, const op_ptr& op) {
  const auto& env = *self->state.env;
  switch (op->kind) {
    case session_op_kind::get:
    case session_op_kind::patch:
      read_session(self, op);
      return;
    case session_op_kind::put:
      write_session(self, op, 0, op->user_id, op->body, op->ttl_s.value_or(env.default_ttl_s),
                    condition_arg(op->if_match, op->if_none_match));
      return;
    case session_op_kind::del:
      eval_redis(self, op, 0, env.scripts.revoke,
                 {env.session_key(op->id), env.dirty_key(self->state.index)},
                 {op->id, std::to_string(env.clock->now_ms()), std::to_string(env.tombstone_ttl_s),
                  condition_arg(op->if_match, std::nullopt), env.prefix + "u:"});
      return;
    default:
      finish(self, op, status_only(500, "operation not handled by a shard"));
  }
}

/// Slides the idle TTL after a read when due; fire-and-forget on the shard's connection, so the
/// next op on the key is sent after it.
void maybe_touch(self_ptr self, model::session& s) {
  const auto& env = *self->state.env;
  auto now = env.clock->now_ms();
  if (!model::should_touch(s.created_ms, s.touch_ms, s.expires_ms, s.ttl_s, now, env.policy))
    return;
  auto ex = model::expires_at(s.created_ms, now, s.ttl_s, env.policy);
  env.counters.touches.fetch_add(1, std::memory_order_relaxed);
  env.redis->eval(self->state.index, env.scripts.touch, {env.session_key(s.id)},
                  {std::to_string(s.version), std::to_string(now), std::to_string(ex),
                   env.prefix + "u:", s.id},
                  [](redis::errc, redis::reply&&) {});
  s.last_activity_ms = now;
  s.touch_ms = now;
  s.expires_ms = ex;
}

/// A read answered: for GET the result, for PATCH the base of the merge.
void on_read(self_ptr self, const op_ptr& op, const redis::reply& r) {
  session_result res;
  auto& s = res.session;
  s.id = op->id;
  if (!parse_session_fields(r, s) || s.state != model::status::active ||
      model::expired(s.expires_ms, self->state.env->clock->now_ms()))
    return finish(self, op, status_only(404, "no live session with this id"));
  if (op->if_match && !op->if_match->any && op->if_match->version != s.version)
    return finish(self, op, status_only(412, "the session is at version " + std::to_string(s.version)));
  if (op->kind == session_op_kind::get) {
    if (op->if_none_match && (op->if_none_match->any || op->if_none_match->version == s.version)) {
      res.status = 304;
      return finish(self, op, std::move(res));
    }
    maybe_touch(self, s);
    res.status = 200;
    return finish(self, op, std::move(res));
  }
  std::string merged;
  if (auto err = model::apply_merge_patch(s.data, op->body, self->state.env->max_data_bytes, merged))
    return finish(self, op, status_only(err->status, err->detail));
  write_session(self, op, 1, s.user_id, merged, s.ttl_s, "m" + std::to_string(s.version));
  op->user_id = s.user_id;
  op->ttl_s = s.ttl_s;
  op->body = std::move(merged);
}

/// The write script answered {code, version, created_ms, expires_ms}.
void on_written(self_ptr self, const op_ptr& op, const redis::reply& r) {
  if (r.type != redis::reply::kind::array || r.elements.size() < 2)
    return finish(self, op, status_only(503, "unexpected reply from Redis"));
  auto code = reply_int(r.elements[0]);
  auto version = reply_int(r.elements[1]);
  if (code == code_precondition_failed && op->kind == session_op_kind::patch &&
      !op->if_match && ++op->attempt < max_cas_attempts) {
    // Another node wrote between our read and our write: merge again on the new version.
    self->state.env->counters.cas_retries.fetch_add(1, std::memory_order_relaxed);
    return read_session(self, op);
  }
  if (code == code_precondition_failed)
    return finish(self, op, status_only(412, "the session is at version " + std::to_string(version)));
  if (code == code_gone)
    return finish(self, op, status_only(410, "this session id was revoked and cannot be reused"));
  if (code == code_not_found || r.elements.size() < 4)
    return finish(self, op, status_only(404, "no live session with this id"));
  session_result res;
  res.status = static_cast<unsigned>(code);
  auto& s = res.session;
  s.id = op->id;
  s.user_id = op->user_id;
  s.data = std::move(op->body);
  s.version = version;
  s.created_ms = reply_int(r.elements[2]);
  s.expires_ms = reply_int(r.elements[3]);
  s.last_activity_ms = s.touch_ms = self->state.env->clock->now_ms();
  s.ttl_s = op->ttl_s.value_or(self->state.env->default_ttl_s);
  finish(self, op, std::move(res));
}

void on_revoked(self_ptr self, const op_ptr& op, const redis::reply& r) {
  if (r.type != redis::reply::kind::array || r.elements.size() < 2)
    return finish(self, op, status_only(503, "unexpected reply from Redis"));
  auto code = reply_int(r.elements[0]);
  if (code == code_precondition_failed)
    return finish(self, op, status_only(412, "the session is at version " +
                                               std::to_string(reply_int(r.elements[1]))));
  if (code != 204)
    return finish(self, op, status_only(404, "no live session with this id"));
  session_result res;
  res.status = 204;
  res.session.version = reply_int(r.elements[1]);
  finish(self, op, std::move(res));
}

void on_redis(self_ptr self, redis_done& d) {
  const auto& op = d.op;
  const auto& env = *self->state.env;
  if (d.error != redis::errc::ok || d.value.is_error()) {
    env.counters.redis_failures.fetch_add(1, std::memory_order_relaxed);
    auto r = status_only(503, d.error != redis::errc::ok
                                ? std::string("Redis unavailable: ") + redis::to_string(d.error)
                                : "Redis error: " + d.value.str);
    r.retry_after_s = env.retry_after_s;
    return finish(self, op, std::move(r));
  }
  switch (op->kind) {
    case session_op_kind::get:
      return on_read(self, op, d.value);
    case session_op_kind::patch:
      return d.step == 0 ? on_read(self, op, d.value) : on_written(self, op, d.value);
    case session_op_kind::put:
      return on_written(self, op, d.value);
    case session_op_kind::del:
      return on_revoked(self, op, d.value);
    default:
      return finish(self, op, status_only(500, "unexpected reply"));
  }
}

} // namespace

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
    [=](session_op& op) {
      auto& busy = self->state.busy;
      auto it = busy.find(op.id);
      if (it != busy.end()) {
        it->second.push_back(std::move(op));
        return;
      }
      busy.emplace(op.id, std::deque<session_op>{});
      start(self, std::make_shared<session_op>(std::move(op)));
    },
    [=](redis_done& d) { on_redis(self, d); },
  };
}

} // namespace sessiond::actors
