// session_store: the session API as short transactions on user_session, with the rules of the
// Redis write, revoke, touch and list scripts (actors/redis_scripts.cpp) and of the shard's
// reads (actors/session_shard.cpp). A write locks its row (SELECT … FOR UPDATE), decides, and
// writes the whole row back at version + 1; the row lock orders concurrent writes of one id.
#include "adapters/postgres/session_store.hpp"

#include "model/merge_patch.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>

namespace sessiond::postgres {

namespace {

const std::string select_sql =
    std::string("select ") + session_row_columns + " from user_session u where u.session_id = $1";
const std::string lock_sql = select_sql + " for update";

// Times travel as epoch milliseconds and are stored as upsert_sessions() stores them.
const std::string insert_sql = std::string(R"(
insert into user_session as u (session_id, user_id, data, version, status, is_active, created_at,
                               last_activity_at, expires_at, updated_at, revoked_at)
values ($1, $2, $3::jsonb, $4::bigint, $5, $6::boolean, to_timestamp($7::bigint / 1000.0),
        to_timestamp($8::bigint / 1000.0), to_timestamp($9::bigint / 1000.0), now(),
        to_timestamp($10::bigint / 1000.0))
on conflict (session_id) do nothing
returning )") + session_row_columns;

const std::string update_sql = std::string(R"(
update user_session u set user_id = $2, data = $3::jsonb, version = $4::bigint, status = $5,
  is_active = $6::boolean, created_at = to_timestamp($7::bigint / 1000.0),
  last_activity_at = to_timestamp($8::bigint / 1000.0),
  expires_at = to_timestamp($9::bigint / 1000.0), updated_at = now(),
  revoked_at = to_timestamp($10::bigint / 1000.0)
where u.session_id = $1
returning )") + session_row_columns;

// A TTL slide keeps the version; it applies only if nobody wrote since the read (the touch
// script's check) and never moves last activity back (two slides racing).
const std::string slide_sql = std::string(R"(
update user_session u set last_activity_at = to_timestamp($3::bigint / 1000.0),
  expires_at = to_timestamp($4::bigint / 1000.0), updated_at = now()
where u.session_id = $1 and u.version = $2::bigint and u.status = 'ACTIVE'
  and u.last_activity_at < to_timestamp($3::bigint / 1000.0)
returning )") + session_row_columns;

const std::string live_of_user = R"(
from user_session u
where u.user_id = $1 and u.status = 'ACTIVE' and u.expires_at > to_timestamp($2::bigint / 1000.0)
)";

const std::string list_sql = std::string("select ") + session_row_columns + live_of_user +
                             "order by u.expires_at, u.session_id limit $3::bigint";

// Locks in session_id order, so two revoke_user calls of one user cannot deadlock.
const std::string lock_user_sql =
    std::string("select u.session_id") + live_of_user + "order by u.session_id for update";

const std::string revoke_ids_sql = std::string(R"(
update user_session u set version = u.version + 1, status = 'REVOKED', is_active = false,
  revoked_at = to_timestamp($2::bigint / 1000.0),
  last_activity_at = to_timestamp($2::bigint / 1000.0), updated_at = now()
where u.session_id = any($1::text[])
returning )") + session_row_columns;

constexpr const char* note_sql = R"(
insert into session_redis_repair (session_id, version)
select * from unnest($1::text[], $2::bigint[])
on conflict (session_id) do update
  set version = greatest(session_redis_repair.version, excluded.version), noted_at = now())";

const std::string load_repairs_sql =
    std::string("select r.session_id, r.version, ") + session_row_columns + R"(
from session_redis_repair r left join user_session u on u.session_id = r.session_id
order by r.noted_at, r.session_id limit $1::bigint)";

constexpr const char* clear_repair_sql =
    "delete from session_redis_repair where session_id = $1 and version <= $2::bigint";

constexpr const char* clear_repairs_sql = R"(
delete from session_redis_repair r using unnest($1::text[], $2::bigint[]) as x(id, v)
where r.session_id = x.id and r.version <= x.v)";

constexpr const char* no_live_session = "no live session with this id";

/// A PUT that keeps finding the id changed between its insert and its lock gives up.
constexpr int max_put_attempts = 3;

/// How a row counts for the preconditions at a given time.
enum class presence {
  absent,   ///< no row, expired, long revoked (or any other status)
  live,     ///< ACTIVE and not expired
  tombstone ///< REVOKED within the tombstone TTL: the id cannot be reused yet
};

presence classify(const std::optional<session_row>& r, std::int64_t now_ms,
                  const store_settings& s) {
  if (!r)
    return presence::absent;
  if (r->status == "ACTIVE")
    return model::expired(r->expires_at_ms, now_ms) ? presence::absent : presence::live;
  if (r->status != "REVOKED")
    return presence::absent;
  // A tombstone written without revoked_at (by hand, or an old row) dates from its last activity.
  auto revoked_ms = r->revoked_at_ms != 0 ? r->revoked_at_ms : r->last_activity_at_ms;
  return now_ms < revoked_ms + s.tombstone_ttl_s * 1000 ? presence::tombstone : presence::absent;
}

/// The idle TTL of a stored row (not a column): what is left between last activity and expiry.
std::int64_t idle_ttl_s(const session_row& r, const model::ttl_policy& p) {
  return std::clamp<std::int64_t>((r.expires_at_ms - r.last_activity_at_ms + 999) / 1000, 1,
                                  p.max_lifetime_s);
}

model::session to_session(const session_row& r, const model::ttl_policy& p) {
  model::session s;
  s.id = r.session_id;
  s.user_id = r.user_id;
  s.data = r.data;
  s.version = r.version;
  s.state = r.status == "ACTIVE" ? model::status::active : model::status::revoked;
  s.created_ms = r.created_at_ms;
  s.last_activity_ms = r.last_activity_at_ms;
  s.expires_ms = r.expires_at_ms;
  s.ttl_s = idle_ttl_s(r, p);
  s.touch_ms = r.last_activity_at_ms;
  return s;
}

/// jsonb's text output has spaces (`{"a": 1}`); callers get the compact text Redis holds.
std::string compact_json(const std::string& id, const std::string& text) {
  auto doc = nlohmann::json::parse(text, nullptr, false);
  if (doc.is_discarded())
    throw pg_error(errc::bad_reply, "user_session.data of " + id + " is not JSON");
  return doc.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

session_row stored_row(const std::vector<field>& fields, std::size_t first = 0) {
  session_row r = parse_session_row(fields, first);
  r.data = compact_json(r.session_id, r.data);
  return r;
}

std::vector<session_row> stored_rows(const result& res) {
  std::vector<session_row> out;
  out.reserve(res.rows.size());
  for (const auto& f : res.rows)
    out.push_back(stored_row(f));
  return out;
}

std::optional<session_row> first_row(const result& res) {
  if (res.rows.empty())
    return std::nullopt;
  return stored_row(res.rows.front());
}

std::optional<session_row> select_row(client& c, const std::string& id, bool for_update) {
  return first_row(c.exec_params(for_update ? lock_sql : select_sql, {id}));
}

std::vector<field> row_params(const session_row& r) {
  return {r.session_id,
          r.user_id,
          r.data,
          std::to_string(r.version),
          r.status,
          r.is_active ? "t" : "f",
          std::to_string(r.created_at_ms),
          std::to_string(r.last_activity_at_ms),
          std::to_string(r.expires_at_ms),
          r.revoked_at_ms == 0 ? field{} : field{std::to_string(r.revoked_at_ms)}};
}

/// Inserts a new row; nullopt when the id appeared meanwhile (another transaction inserted it:
/// ON CONFLICT waits for that one to end).
std::optional<session_row> insert_row(client& c, const session_row& r) {
  return first_row(c.exec_params(insert_sql, row_params(r)));
}

/// Writes `r` over its row, which this transaction has locked.
session_row update_row(client& c, const session_row& r) {
  auto out = first_row(c.exec_params(update_sql, row_params(r)));
  if (!out)
    throw pg_error(errc::bad_reply, "the locked row of session " + r.session_id + " vanished");
  return *out;
}

/// Notes the rows in session_redis_repair at their versions (ids distinct).
void note_repairs(client& c, const std::vector<session_row>& rows) {
  if (rows.empty())
    return;
  std::vector<field> ids, versions;
  for (const auto& r : rows) {
    ids.emplace_back(r.session_id);
    versions.emplace_back(std::to_string(r.version));
  }
  c.exec_params(note_sql, {array_literal(ids), array_literal(versions)});
}

std::int64_t to_int(const field& f, const char* what) {
  std::int64_t out = 0;
  if (f) {
    auto [end, ec] = std::from_chars(f->data(), f->data() + f->size(), out);
    if (ec == std::errc{} && end == f->data() + f->size())
      return out;
  }
  throw pg_error(errc::bad_reply, std::string(what) + " is not an integer");
}

store_result refused(unsigned status, std::string detail) {
  store_result r;
  r.status = status;
  r.detail = std::move(detail);
  return r;
}

store_result at_version(std::int64_t version) {
  return refused(412, "the session is at version " + std::to_string(version));
}

/// The result of a write of `row`, noted for repair when the settings say so.
store_result wrote(client& c, const store_settings& s, unsigned status, session_row row) {
  if (s.note_repairs)
    note_repairs(c, {row});
  store_result r;
  r.status = status;
  r.session = to_session(row, s.policy);
  r.written.push_back(std::move(row));
  return r;
}

/// A live row no write may extend any more (the max lifetime shrank since it was written).
bool past_lifetime(const session_row& r, std::int64_t now_ms, const model::ttl_policy& p) {
  return r.created_at_ms + p.max_lifetime_s * 1000 <= now_ms;
}

/// The row a write stores: version + 1 (1 for a new id), ACTIVE, created_at kept only when the
/// session is live, last activity now, the idle TTL capped by the max lifetime.
session_row next_row(const std::optional<session_row>& cur, bool live, const std::string& id,
                     const std::string& user_id, const std::string& data, std::int64_t ttl_s,
                     std::int64_t now_ms, const model::ttl_policy& p) {
  session_row r;
  r.session_id = id;
  r.user_id = user_id;
  r.data = data;
  r.version = cur ? cur->version + 1 : 1;
  r.created_at_ms = live ? cur->created_at_ms : now_ms;
  r.last_activity_at_ms = now_ms;
  r.expires_at_ms = model::expires_at(r.created_at_ms, now_ms, ttl_s, p);
  return r;
}

/// The PUT preconditions (the write script's cond_fails): If-None-Match: * creates only,
/// If-Match: * replaces only, If-Match: "N" replaces version N only.
std::optional<store_result> put_refusal(const store_condition& cond, presence state,
                                        const std::optional<session_row>& cur) {
  bool exists = state == presence::live;
  if (cond.if_none_match && cond.if_none_match->any)
    return exists ? std::optional(at_version(cur->version)) : std::nullopt;
  if (!cond.if_match)
    return std::nullopt;
  if (!exists)
    return refused(412, no_live_session);
  if (!cond.if_match->any && cond.if_match->version != cur->version)
    return at_version(cur->version);
  return std::nullopt;
}

/// The read checks (the shard's check_read): 404 unless live, 412 on an If-Match "N" mismatch.
std::optional<store_result> read_refusal(const std::optional<session_row>& cur,
                                         const std::optional<model::etag_condition>& if_match,
                                         std::int64_t now_ms, const store_settings& s) {
  if (classify(cur, now_ms, s) != presence::live)
    return refused(404, no_live_session);
  if (if_match && !if_match->any && if_match->version != cur->version)
    return at_version(cur->version);
  return std::nullopt;
}

/// One attempt of a PUT; nullopt when its insert lost the race for a new id (try again).
std::optional<store_result> try_put(client& c, const store_settings& s, const std::string& id,
                                    const std::string& user_id, const std::string& data,
                                    std::int64_t ttl_s, const store_condition& cond,
                                    std::int64_t now_ms) {
  auto cur = select_row(c, id, true);
  auto state = classify(cur, now_ms, s);
  if (state == presence::tombstone)
    return refused(410, "this session id was revoked and cannot be reused");
  if (auto r = put_refusal(cond, state, cur))
    return r;
  bool live = state == presence::live;
  if (live && past_lifetime(*cur, now_ms, s.policy))
    return refused(404, no_live_session);
  auto row = next_row(cur, live, id, user_id, data, ttl_s, now_ms, s.policy);
  auto stored = cur ? std::optional(update_row(c, row)) : insert_row(c, row);
  if (!stored)
    return std::nullopt;
  auto r = wrote(c, s, live ? 200 : 201, std::move(*stored));
  r.session.ttl_s = ttl_s; // as asked, also when the max lifetime capped the expiry
  return r;
}

/// Slides the idle TTL of a live session read at `now_ms` when due (the shard's maybe_touch).
void maybe_slide(client& c, const store_settings& s, const session_row& cur, std::int64_t now_ms,
                 store_result& r) {
  auto ttl_s = idle_ttl_s(cur, s.policy);
  if (!model::should_touch(cur.created_at_ms, cur.last_activity_at_ms, cur.expires_at_ms, ttl_s,
                           now_ms, s.policy))
    return;
  auto ex = model::expires_at(cur.created_at_ms, now_ms, ttl_s, s.policy);
  auto slid = first_row(c.exec_params(slide_sql, {cur.session_id, std::to_string(cur.version),
                                                  std::to_string(now_ms), std::to_string(ex)}));
  if (!slid) // written meanwhile: the read stands as read
    return;
  if (s.note_repairs)
    note_repairs(c, {*slid});
  r.session = to_session(*slid, s.policy);
  r.session.ttl_s = ttl_s;
  r.written.push_back(std::move(*slid));
}

} // namespace

store_result session_store::get(client& c, const std::string& id, const store_condition& cond,
                                std::int64_t now_ms) const {
  return c.transaction([&] {
    auto cur = select_row(c, id, false);
    if (auto refusal = read_refusal(cur, cond.if_match, now_ms, s_))
      return std::move(*refusal);
    store_result r;
    r.session = to_session(*cur, s_.policy);
    const auto& inm = cond.if_none_match;
    if (inm && (inm->any || inm->version == cur->version)) {
      r.status = 304;
      return r;
    }
    r.status = 200;
    maybe_slide(c, s_, *cur, now_ms, r);
    return r;
  });
}

store_result session_store::put(client& c, const std::string& id, const std::string& user_id,
                                const std::string& data, std::optional<std::int64_t> ttl_s,
                                const store_condition& cond, std::int64_t now_ms) const {
  return c.transaction([&] {
    for (int attempt = 1;; ++attempt) {
      auto r = try_put(c, s_, id, user_id, data, ttl_s.value_or(s_.default_ttl_s), cond, now_ms);
      if (r)
        return std::move(*r);
      if (attempt == max_put_attempts) // SQLSTATE 40001: the caller may retry the operation
        throw pg_error(errc::server_error, "session " + id + " kept changing during a PUT",
                       "40001");
    }
  });
}

store_result session_store::patch(client& c, const std::string& id, const std::string& merge_patch,
                                  const store_condition& cond, std::int64_t now_ms) const {
  return c.transaction([&] {
    auto cur = select_row(c, id, true);
    if (auto refusal = read_refusal(cur, cond.if_match, now_ms, s_))
      return std::move(*refusal);
    if (past_lifetime(*cur, now_ms, s_.policy))
      return refused(404, no_live_session);
    std::string merged;
    if (auto err = model::apply_merge_patch(cur->data, merge_patch, s_.max_data_bytes, merged))
      return refused(err->status, err->detail);
    auto ttl_s = idle_ttl_s(*cur, s_.policy);
    auto row = next_row(cur, true, id, cur->user_id, merged, ttl_s, now_ms, s_.policy);
    auto r = wrote(c, s_, 200, update_row(c, row));
    r.session.ttl_s = ttl_s;
    return r;
  });
}

store_result session_store::revoke(client& c, const std::string& id, const store_condition& cond,
                                   std::int64_t now_ms) const {
  return c.transaction([&] {
    auto cur = select_row(c, id, true);
    if (classify(cur, now_ms, s_) != presence::live)
      return refused(404, no_live_session);
    if (cond.if_match && !cond.if_match->any && cond.if_match->version != cur->version)
      return at_version(cur->version);
    session_row row = *cur;
    row.version += 1;
    row.status = "REVOKED";
    row.is_active = false;
    row.revoked_at_ms = now_ms;
    row.last_activity_at_ms = now_ms;
    return wrote(c, s_, 204, update_row(c, row));
  });
}

store_result session_store::list_user(client& c, const std::string& user_id,
                                      std::int64_t now_ms) const {
  // One statement, so its own transaction: no BEGIN/COMMIT round trips needed.
  result res =
      c.exec_params(list_sql, {user_id, std::to_string(now_ms),
                               std::to_string(std::max<std::int64_t>(0, s_.max_user_sessions))});
  store_result r;
  r.status = 200;
  for (const auto& row : stored_rows(res))
    r.sessions.push_back(to_session(row, s_.policy));
  return r;
}

store_result session_store::revoke_user(client& c, const std::string& user_id,
                                        std::int64_t now_ms) const {
  return c.transaction([&] {
    auto now = std::to_string(now_ms);
    result locked = c.exec_params(lock_user_sql, {user_id, now});
    std::vector<field> ids;
    for (const auto& f : locked.rows)
      ids.push_back(f.at(0));
    store_result r;
    r.status = 200;
    if (ids.empty())
      return r;
    r.written = stored_rows(c.exec_params(revoke_ids_sql, {array_literal(ids), now}));
    std::sort(r.written.begin(), r.written.end(), [](const session_row& a, const session_row& b) {
      return a.session_id < b.session_id;
    });
    if (s_.note_repairs)
      note_repairs(c, r.written);
    r.count = static_cast<std::int64_t>(r.written.size());
    return r;
  });
}

std::vector<pending_repair> load_repairs(client& c, std::size_t limit) {
  result res = c.exec_params(load_repairs_sql, {std::to_string(limit)});
  std::vector<pending_repair> out;
  out.reserve(res.rows.size());
  for (const auto& f : res.rows) {
    if (f.size() != 12 || !f[0])
      throw pg_error(errc::bad_reply, "session_redis_repair row of the wrong shape");
    pending_repair p;
    p.session_id = *f[0];
    p.version = to_int(f[1], "session_redis_repair.version");
    if (f[2]) // the left join found the row
      p.row = stored_row(f, 2);
    out.push_back(std::move(p));
  }
  return out;
}

bool clear_repair(client& c, const std::string& session_id, std::int64_t version) {
  return c.exec_params(clear_repair_sql, {session_id, std::to_string(version)}).affected == 1;
}

std::int64_t clear_repairs(client& c, const std::vector<pending_repair>& notes) {
  if (notes.empty())
    return 0;
  std::vector<field> ids, versions;
  for (const auto& n : notes) {
    ids.emplace_back(n.session_id);
    versions.emplace_back(std::to_string(n.version));
  }
  return static_cast<std::int64_t>(
      c.exec_params(clear_repairs_sql, {array_literal(ids), array_literal(versions)}).affected);
}

std::int64_t count_repairs(client& c) {
  result res = c.exec("select count(*) from session_redis_repair");
  if (res.rows.size() != 1 || res.rows[0].size() != 1)
    throw pg_error(errc::bad_reply, "count of session_redis_repair of the wrong shape");
  return to_int(res.rows[0][0], "count(*)");
}

} // namespace sessiond::postgres

namespace sessiond::postgres {

void note_repair(client& c, const std::string& session_id, std::int64_t version) {
  session_row r;
  r.session_id = session_id;
  r.version = version;
  note_repairs(c, {r});
}

bool slide_session(client& c, const std::string& session_id, std::int64_t version,
                   std::int64_t last_activity_ms, std::int64_t expires_ms) {
  return !c.exec_params(slide_sql, {session_id, std::to_string(version),
                                    std::to_string(last_activity_ms), std::to_string(expires_ms)})
              .rows.empty();
}

} // namespace sessiond::postgres
