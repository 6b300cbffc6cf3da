// session_modes: the routing table of the modes, the operations served from PostgreSQL, the
// copies into Redis, and the watcher that degrades, returns and puts sessions back.
#include "app/session_modes.hpp"

#include "adapters/redis/blocking.hpp"
#include "model/shard_for.hpp"

namespace sessiond::app {

using messages::session_op;
using messages::session_op_kind;
using messages::session_result;
using op_ptr = std::shared_ptr<session_op>;

namespace {

bool is_write(session_op_kind k) {
  return k == session_op_kind::put || k == session_op_kind::patch || k == session_op_kind::del ||
         k == session_op_kind::revoke_user;
}

session_result unavailable(std::string detail, std::int64_t retry_after_s) {
  session_result r;
  r.status = 503;
  r.detail = std::move(detail);
  r.retry_after_s = retry_after_s;
  return r;
}

session_result to_result(postgres::store_result&& s) {
  session_result r;
  r.status = s.status;
  r.session = std::move(s.session);
  r.sessions = std::move(s.sessions);
  r.count = s.count;
  r.detail = std::move(s.detail);
  return r;
}

postgres::store_settings noting(postgres::store_settings s) {
  s.note_repairs = true;
  return s;
}

/// Completes an op once every copy into Redis answered (or when dropped unfinished).
struct mirror_wait {
  op_ptr op;
  session_result result;
  ~mirror_wait() { op->done->complete(std::move(result)); }
};

} // namespace

session_mode parse_mode(const std::string& name) {
  if (name == "postgres")
    return session_mode::postgres;
  if (name == "shadow")
    return session_mode::shadow;
  if (name == "redis-read")
    return session_mode::redis_read;
  return session_mode::redis_primary;
}

const char* to_string(session_mode m) {
  switch (m) {
  case session_mode::postgres:
    return "postgres";
  case session_mode::shadow:
    return "shadow";
  case session_mode::redis_read:
    return "redis-read";
  case session_mode::redis_primary:
    return "redis-primary";
  }
  return "unknown";
}

const char* to_string(redis_state s) {
  switch (s) {
  case redis_state::serving:
    return "serving";
  case redis_state::degraded:
    return "degraded";
  case redis_state::returning:
    return "returning";
  }
  return "unknown";
}

session_modes::session_modes(modes_options o, const actors::shard_env& env, postgres::pool& pool)
    : o_(std::move(o)), env_(env), pool_(pool), store_(o_.store), noting_store_(noting(o_.store)) {}

session_modes::~session_modes() {
  stop();
}

// --- routing ---------------------------------------------------------------------------------

route_decision decide(session_mode mode, redis_state state, bool fallback, session_op_kind kind) {
  bool redis_ok = state == redis_state::serving;
  // Reads (and redis-primary writes) leave Redis while it is down with the fallback on, and
  // while the sessions written meanwhile are put back (Redis would answer stale versions).
  bool off_redis = state == redis_state::returning || (state == redis_state::degraded && fallback);
  bool write = is_write(kind);
  switch (mode) {
  case session_mode::postgres:
    return {true, false, false};
  case session_mode::shadow:
  case session_mode::redis_read:
    if (write) // PostgreSQL first, then the copy, or a note when Redis cannot take it
      return {true, redis_ok, !redis_ok};
    return {mode == session_mode::shadow || off_redis, false, false};
  case session_mode::redis_primary:
    return {off_redis, false, off_redis};
  }
  return {};
}

bool session_modes::needs_postgres() const {
  return o_.mode != session_mode::redis_primary || state_.load() != redis_state::serving;
}

bool session_modes::needs_redis() const {
  if (o_.mode == session_mode::postgres || o_.mode == session_mode::shadow)
    return false;
  return !(o_.fallback && state_.load() != redis_state::serving);
}

bool session_modes::divert(session_op& op, std::function<void(session_op&&)> to_shards) {
  auto state = state_.load();
  if (state == redis_state::serving) {
    auto how = decide(o_.mode, state, o_.fallback, op.kind);
    if (!how.postgres)
      return false;
    in_flight_.fetch_add(1);
    run(std::move(op), how);
    return true;
  }
  // Not serving: routed under the gate, so the switch back to serving (gated_switch) either
  // holds the op, or counts it (in_flight_) before it waits for the ops on PostgreSQL, or runs
  // before it and the op sees the state serving.
  std::unique_lock<std::mutex> lock{gate_mtx_};
  if (gate_closed_) {
    held_.push_back(held_op{std::move(op), std::move(to_shards)});
    return true;
  }
  auto how = decide(o_.mode, state_.load(), o_.fallback, op.kind);
  if (!how.postgres)
    return false;
  in_flight_.fetch_add(1);
  lock.unlock();
  run(std::move(op), how);
  return true;
}

void session_modes::run(session_op&& op, route_decision how) {
  auto p = std::make_shared<session_op>(std::move(op));
  bool queued = pool_.submit([this, p, how](postgres::client* c) {
    if (!c) {
      in_flight_.fetch_sub(1);
      return p->done->complete(unavailable("PostgreSQL unreachable", o_.retry_after_s));
    }
    postgres::store_result out;
    try {
      out = execute(*c, *p, how.note);
    } catch (const postgres::pg_error& e) {
      in_flight_.fetch_sub(1);
      p->done->complete(
          unavailable(std::string("PostgreSQL failed: ") + e.what(), o_.retry_after_s));
      throw; // drops the connection; the next job connects again
    }
    served_.fetch_add(1, std::memory_order_relaxed);
    auto written = std::move(out.written);
    finish(p, to_result(std::move(out)), std::move(written), how.mirror);
    in_flight_.fetch_sub(1);
  });
  if (!queued) {
    in_flight_.fetch_sub(1);
    p->done->complete(unavailable("too many PostgreSQL operations queued", o_.retry_after_s));
  }
}

postgres::store_result session_modes::execute(postgres::client& c, const session_op& op,
                                              bool note) const {
  const auto& store = note ? noting_store_ : store_;
  auto now = env_.clock->now_ms();
  postgres::store_condition cond{op.if_match, op.if_none_match};
  switch (op.kind) {
  case session_op_kind::get:
    return store.get(c, op.id, cond, now);
  case session_op_kind::put:
    return store.put(c, op.id, op.user_id, op.body, op.ttl_s, cond, now);
  case session_op_kind::patch:
    return store.patch(c, op.id, op.body, cond, now);
  case session_op_kind::del:
    return store.revoke(c, op.id, cond, now);
  case session_op_kind::list_user:
    return store.list_user(c, op.id, now);
  case session_op_kind::revoke_user:
    return store.revoke_user(c, op.id, now);
  }
  postgres::store_result r;
  r.status = 500;
  r.detail = "operation not handled";
  return r;
}

/// Answers the op; with `mirror`, after every written row was copied into Redis, so a client
/// that reads Redis next (redis-read) sees its write. A copy that fails is noted for put-back.
void session_modes::finish(const op_ptr& op, session_result&& r,
                           std::vector<postgres::session_row>&& written, bool mirror) {
  if (!mirror || written.empty())
    return op->done->complete(std::move(r));
  auto wait = std::make_shared<mirror_wait>();
  wait->op = op;
  wait->result = std::move(r);
  for (auto& row : written) {
    auto shard = model::shard_for(row.session_id, o_.shards);
    auto args = env_.row_args(row);
    env_.redis->eval(shard, env_.scripts.mirror, {env_.session_key(row.session_id)},
                     std::move(args), [this, wait, row, shard](redis::errc e, redis::reply&& rep) {
                       if (e != redis::errc::ok || rep.is_error()) {
                         mirror_failures_.fetch_add(1, std::memory_order_relaxed);
                         note_later(row);
                       } else if (rep.integer == 1 && row.status == "ACTIVE") {
                         env_.index_session(shard, row.user_id, row.session_id, row.created_at_ms);
                       }
                     });
  }
}

void session_modes::note_later(const postgres::session_row& row) {
  auto id = row.session_id;
  auto version = row.version;
  pool_.submit([this, id, version](postgres::client* c) {
    if (!c)
      return o_.warn("session " + id + " was not copied into Redis and cannot be noted for " +
                     "put-back: PostgreSQL unreachable");
    postgres::note_repair(*c, id, version);
  });
}

void session_modes::slide(const model::session& s) {
  if (o_.mode != session_mode::redis_read)
    return;
  auto id = s.id;
  auto version = s.version;
  auto activity = s.last_activity_ms;
  auto expires = s.expires_ms;
  pool_.submit([id, version, activity, expires](postgres::client* c) {
    if (c)
      postgres::slide_session(*c, id, version, activity, expires);
  });
}

// --- the watcher -----------------------------------------------------------------------------

void session_modes::start() {
  if (o_.mode == session_mode::postgres)
    return;
  try {
    db_ = std::make_unique<postgres::client>(o_.db);
    auto pending = postgres::count_repairs(*db_);
    repairs_pending_.store(pending);
    if (pending > 0)
      set_state(redis_state::returning, std::to_string(pending) +
                                            " sessions written in PostgreSQL while Redis was "
                                            "down are still to be put back");
  } catch (const postgres::pg_error& e) {
    db_.reset();
    o_.warn(std::string("modes: cannot look for sessions to put back into Redis yet: ") + e.what());
  }
  watcher_ = std::thread([this] { watch(); });
}

void session_modes::stop() {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    stop_ = true;
  }
  cv_.notify_all();
  if (watcher_.joinable())
    watcher_.join();
  std::vector<held_op> held;
  {
    std::lock_guard<std::mutex> guard{gate_mtx_};
    held.swap(held_); // empty unless a switch was cut short
    gate_closed_ = false;
  }
  for (auto& h : held)
    h.op.done->complete(unavailable("the node is stopping", o_.retry_after_s));
}

void session_modes::wake() {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    woken_ = true;
  }
  cv_.notify_all();
}

void session_modes::set_state(redis_state s, const std::string& why) {
  auto old = state_.exchange(s);
  if (old == s)
    return;
  changes_.fetch_add(1);
  std::string line =
      std::string("sessions: ") + to_string(old) + " -> " + to_string(s) + ": " + why;
  s == redis_state::serving ? o_.info(line) : o_.warn(line);
}

void session_modes::watch() {
  auto started = std::chrono::steady_clock::now();
  auto next_pass = started;
  std::unique_lock<std::mutex> lock{mtx_};
  while (!stop_) {
    cv_.wait_for(lock, o_.watch_interval, [this] { return stop_ || woken_; });
    woken_ = false;
    if (stop_)
      break;
    lock.unlock();
    auto now = std::chrono::steady_clock::now();
    bool up = env_.redis->connected();
    auto state = state_.load();
    if (!up && state != redis_state::degraded && now - started >= o_.start_grace) {
      set_state(redis_state::degraded,
                o_.fallback || o_.mode == session_mode::shadow
                    ? "Redis unreachable; sessions are served from PostgreSQL"
                    : "Redis unreachable; session requests answer 503 (on_redis_down = reject)");
    } else if (up && state == redis_state::degraded) {
      set_state(redis_state::returning, "Redis is back; putting back the sessions written in "
                                        "PostgreSQL meanwhile");
      returning_passes_ = 0;
      next_pass = now;
    }
    if (up && now >= next_pass) {
      auto left = put_back_all();
      bool returning = state_.load() == redis_state::returning;
      if (returning && left >= 0)
        ++returning_passes_;
      // Returning, and a pass that worked left few notes (or passes keep leaving many): switch
      // back with the gate closed, which puts back the rest with no new ones coming from here.
      if (returning && left >= 0 &&
          (left <= o_.switch_notes_max || returning_passes_ >= o_.switch_after_passes)) {
        left = gated_switch() ? 0 : -1;
        returning = state_.load() == redis_state::returning;
      }
      // Still returning: again at once (notes left) or in a second (a failed pass or switch).
      next_pass = now + (returning && left > 0 ? o_.watch_interval
                         : returning           ? std::chrono::milliseconds(1000)
                                               : o_.put_back_interval);
    }
    lock.lock();
  }
}

bool session_modes::gated_switch() {
  auto closed_at = std::chrono::steady_clock::now();
  {
    std::lock_guard<std::mutex> guard{gate_mtx_};
    gate_closed_ = true;
  }
  // From here no operation of this node starts on PostgreSQL; wait for those running, whose
  // notes are committed (in their transaction) before they count down.
  auto until = std::chrono::steady_clock::now() + o_.redis_wait;
  while (in_flight_.load() > 0 && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  bool ok = false;
  std::int64_t left = -1;
  if (in_flight_.load() == 0) {
    left = put_back_all();
    ok = left >= 0;
  } else {
    failed_pass("switch back to Redis: operations on PostgreSQL still running after " +
                std::to_string(o_.redis_wait.count()) + " ms");
  }
  std::vector<held_op> held;
  {
    std::lock_guard<std::mutex> guard{gate_mtx_};
    held.swap(held_);
    auto paused = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - closed_at);
    if (ok)
      set_state(redis_state::serving,
                "every session written meanwhile is back in Redis (" + std::to_string(held.size()) +
                    " operations held for " + std::to_string(paused.count()) + " ms" +
                    (left > 0 ? "; " + std::to_string(left) +
                                    " notes left are other nodes', put back by the next passes"
                              : std::string()) +
                    ")");
    gate_closed_ = false;
  }
  for (auto& h : held) { // as if they arrived now
    auto to_shards = h.to_shards;
    if (!divert(h.op, to_shards))
      to_shards(std::move(h.op));
  }
  return ok;
}

std::int64_t session_modes::put_back_all() {
  constexpr std::size_t batch = 500;
  try {
    if (!db_)
      db_ = std::make_unique<postgres::client>(o_.db);
    for (;;) {
      auto notes = postgres::load_repairs(*db_, batch);
      // The notes put back are cleared in one statement per batch (one commit, not one each).
      std::vector<postgres::pending_repair> done;
      done.reserve(notes.size());
      for (auto& n : notes) {
        if (n.row) {
          auto args = env_.row_args(*n.row);
          args.push_back(std::to_string(env_.clock->now_ms()));
          auto shard = model::shard_for(n.session_id, o_.shards);
          auto r = redis::eval_wait(*env_.redis, shard, env_.scripts.put_back,
                                    {env_.session_key(n.session_id), env_.dirty_key(n.session_id)},
                                    std::move(args), o_.redis_wait);
          if (r.error == redis::errc::ok && !r.value.is_error() && n.row->status == "ACTIVE")
            r = redis::eval_wait(
                *env_.redis, shard, env_.scripts.index_add, {env_.user_key(n.row->user_id)},
                {std::to_string(n.row->created_at_ms), n.session_id,
                 std::to_string(env_.clock->now_ms()),
                 std::to_string(n.row->created_at_ms + env_.policy.max_lifetime_s * 1000)},
                o_.redis_wait);
          if (r.error != redis::errc::ok || r.value.is_error()) {
            postgres::clear_repairs(*db_, done);
            return failed_pass(
                "put-back of session " + n.session_id + " failed: " +
                (r.error != redis::errc::ok ? redis::to_string(r.error) : r.value.str));
          }
          put_back_.fetch_add(1);
        }
        n.row.reset();
        done.push_back(std::move(n));
      }
      postgres::clear_repairs(*db_, done);
      if (notes.size() < batch) {
        auto left = postgres::count_repairs(*db_);
        repairs_pending_.store(left);
        if (pass_failed_)
          o_.info("put-back works again; " + std::to_string(left) + " notes left");
        pass_failed_ = false;
        return left;
      }
    }
  } catch (const postgres::pg_error& e) {
    if (!db_ || !db_->connected())
      db_.reset();
    return failed_pass(std::string("put-back: PostgreSQL failed: ") + e.what());
  }
}

std::int64_t session_modes::failed_pass(const std::string& why) {
  if (!pass_failed_) // once per failure streak, not every pass
    o_.warn(why + " (retrying; logged again after a pass that works)");
  pass_failed_ = true;
  return -1;
}

modes_snapshot session_modes::snapshot() const {
  modes_snapshot s;
  s.mode = o_.mode;
  s.state = state_.load();
  s.degraded = s.state != redis_state::serving &&
               (o_.fallback || s.state == redis_state::returning) &&
               (o_.mode == session_mode::redis_primary || o_.mode == session_mode::redis_read);
  s.repairs_pending = repairs_pending_.load();
  s.served_postgres = served_.load();
  s.mirror_failures = mirror_failures_.load();
  s.put_back = put_back_.load();
  s.state_changes = changes_.load();
  return s;
}

} // namespace sessiond::app
