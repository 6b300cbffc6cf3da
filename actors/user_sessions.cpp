// list_user_sessions: three reads in parallel (the index's ids through list_index, layout 1's
// index while it may exist, PostgreSQL's live rows), then one pipelined HMGET per id. Ids the
// index holds for sessions that are gone, revoked, expired or now of another user are trimmed
// (ZREM): an index entry is written only after its session, so such an entry is never one of a
// session still being written.
#include "actors/user_sessions.hpp"

#include "actors/session_shard.hpp"

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <set>

namespace sessiond::actors {

namespace {

struct listing_state {
  std::shared_ptr<const shard_env> env;
  std::string uid;
  std::function<void(user_listing&&)> done;
  std::int64_t now = 0;
  std::mutex mtx;
  std::atomic<int> reads_left{0};
  // Guarded by mtx until reads_left reaches 0.
  std::set<std::string> indexed;    ///< ids in layout 2's index
  std::set<std::string> candidates; ///< every id to look at
  std::map<std::string, model::session> from_pg;
  user_listing out;
  // The session reads.
  std::vector<std::string> ids;
  std::vector<redis::reply> replies;
  std::vector<redis::reply> legacy_replies;
  std::atomic<std::size_t> sessions_left{0};
  std::atomic<bool> failed{false};
  redis::errc error = redis::errc::ok;
  redis::reply error_reply;
};

using state_ptr = std::shared_ptr<listing_state>;

void fail(const state_ptr& st, redis::errc e, const redis::reply& r) {
  std::lock_guard<std::mutex> guard{st->mtx};
  if (!st->out.redis_failed) {
    st->out.redis_failed = true;
    st->out.failure = redis_failure(*st->env, e, r);
  }
}

bool live_for(const listing_state& st, const model::session& s) {
  return s.state == model::status::active && s.user_id == st.uid &&
         !model::expired(s.expires_ms, st.now);
}

bool missing(const redis::reply& r) {
  return r.type != redis::reply::kind::array || r.elements.empty() ||
         r.elements[0].type == redis::reply::kind::nil;
}

/// Opens a listed session's sealed data; one that does not open is listed with `{}` and makes
/// the listing answer 500.
void open_data(const shard_env& env, model::session& s, user_listing& out) {
  if (!crypto::is_envelope(s.data))
    return;
  auto o = env.crypto->open(s.id, s.data);
  if (o.code == crypto::errc::ok) {
    s.data = std::move(o.plaintext);
    return;
  }
  s.data = "{}";
  if (out.undecryptable)
    return;
  out.undecryptable = true;
  out.decrypt_failure.status = 500;
  out.decrypt_failure.undecryptable = true;
  out.decrypt_failure.detail = "session " + s.id + ": " + open_failure_detail(o);
}

void finish(const state_ptr& st) {
  const auto& env = *st->env;
  auto& out = st->out;
  if (!out.redis_failed) {
    std::vector<std::string> trim{"ZREM", env.user_key(st->uid)};
    for (std::size_t i = 0; i < st->ids.size(); ++i) {
      const auto& id = st->ids[i];
      model::session s;
      s.id = id;
      const redis::reply* r = &st->replies[i];
      if (missing(*r) && i < st->legacy_replies.size() && !missing(st->legacy_replies[i]))
        r = &st->legacy_replies[i]; // not moved to layout 2 yet
      if (!missing(*r)) {
        if (parse_session_fields(*r, s) && live_for(*st, s)) {
          open_data(env, s, out);
          out.sessions.push_back(std::move(s));
        } else if (st->indexed.count(id))
          trim.push_back(id);
        continue;
      }
      if (auto p = st->from_pg.find(id); p != st->from_pg.end()) {
        out.sessions.push_back(p->second);
        ++out.from_postgres;
      } else if (st->indexed.count(id)) {
        trim.push_back(id);
      }
    }
    if (trim.size() > 2)
      env.redis->command(env.redis->local_hint(0), std::move(trim),
                         [](redis::errc, redis::reply&&) {});
    std::sort(out.sessions.begin(), out.sessions.end(),
              [](const model::session& a, const model::session& b) {
                return a.expires_ms != b.expires_ms ? a.expires_ms < b.expires_ms : a.id < b.id;
              });
    auto max = static_cast<std::size_t>(std::max<std::int64_t>(0, env.max_user_sessions));
    if (out.sessions.size() > max)
      out.sessions.resize(max);
  }
  auto done = std::move(st->done);
  done(std::move(out));
}

void read_sessions(const state_ptr& st) {
  const auto& env = *st->env;
  if (st->out.redis_failed)
    return finish(st);
  st->ids.assign(st->candidates.begin(), st->candidates.end());
  bool legacy = env.legacy.load(std::memory_order_relaxed);
  st->replies.resize(st->ids.size());
  if (legacy)
    st->legacy_replies.resize(st->ids.size());
  auto n = st->ids.size() * (legacy ? 2 : 1);
  if (n == 0)
    return finish(st);
  st->sessions_left = n;
  auto hint = env.redis->local_hint(0);
  auto one_done = [st](redis::errc e, redis::reply& slot, redis::reply&& r) {
    if (e != redis::errc::ok || r.is_error())
      fail(st, e, r);
    slot = std::move(r);
    if (--st->sessions_left == 0)
      finish(st);
  };
  for (std::size_t i = 0; i < st->ids.size(); ++i) {
    env.redis->command(hint, session_read_args(env.session_key(st->ids[i])),
                       [st, i, one_done](redis::errc e, redis::reply&& r) {
                         one_done(e, st->replies[i], std::move(r));
                       });
    if (legacy)
      env.redis->command(hint, session_read_args(env.keys.legacy_session(st->ids[i])),
                         [st, i, one_done](redis::errc e, redis::reply&& r) {
                           one_done(e, st->legacy_replies[i], std::move(r));
                         });
  }
}

void read_done(const state_ptr& st) {
  if (--st->reads_left == 0)
    read_sessions(st);
}

void add_ids(const state_ptr& st, const redis::reply& r, bool indexed) {
  std::lock_guard<std::mutex> guard{st->mtx};
  for (const auto& id : r.elements)
    if (id.type == redis::reply::kind::string) {
      st->candidates.insert(id.str);
      if (indexed)
        st->indexed.insert(id.str);
    }
}

} // namespace

void list_user_sessions(const std::shared_ptr<const shard_env>& env, const std::string& uid,
                        std::function<void(user_listing&&)> done) {
  auto st = std::make_shared<listing_state>();
  st->env = env;
  st->uid = uid;
  st->done = std::move(done);
  st->now = env->clock->now_ms();
  bool legacy = env->legacy.load(std::memory_order_relaxed);
  bool ask_pg = static_cast<bool>(env->load_user_rows);
  st->reads_left = 1 + (legacy ? 1 : 0) + (ask_pg ? 1 : 0);
  auto hint = env->redis->local_hint(0);
  auto max = std::to_string(env->max_user_sessions);
  env->redis->eval(hint, env->scripts.list_index, {env->user_key(uid)},
                   {std::to_string(st->now - env->policy.max_lifetime_s * 1000), max},
                   [st](redis::errc e, redis::reply&& r) {
                     if (e != redis::errc::ok || r.is_error())
                       fail(st, e, r);
                     else
                       add_ids(st, r, true);
                     read_done(st);
                   });
  if (legacy)
    env->redis->command(hint, {"ZRANGE", env->keys.legacy_user(uid), "0", "-1"},
                        [st](redis::errc e, redis::reply&& r) {
                          if (e != redis::errc::ok || r.is_error())
                            fail(st, e, r);
                          else
                            add_ids(st, r, false);
                          read_done(st);
                        });
  if (ask_pg) {
    auto asked =
        env->load_user_rows(uid, [st](std::optional<std::vector<postgres::session_row>> rows) {
          {
            std::lock_guard<std::mutex> guard{st->mtx};
            if (!rows) {
              st->out.postgres_failed = true;
            } else {
              for (const auto& row : *rows) {
                model::session s;
                s.id = row.session_id;
                s.user_id = row.user_id;
                s.version = row.version;
                s.state = model::status::active;
                s.created_ms = row.created_at_ms;
                s.last_activity_ms = s.touch_ms = row.last_activity_at_ms;
                s.expires_ms = row.expires_at_ms;
                s.ttl_s = std::max<std::int64_t>(
                    1, (row.expires_at_ms - row.last_activity_at_ms + 999) / 1000);
                s.data = row.data;
                st->candidates.insert(s.id);
                st->from_pg.emplace(s.id, std::move(s));
              }
            }
          }
          read_done(st);
        });
    if (!asked) {
      {
        std::lock_guard<std::mutex> guard{st->mtx};
        st->out.postgres_failed = true;
      }
      read_done(st);
    }
  }
}

} // namespace sessiond::actors
