// upsert_sessions(), load_versions() and load_session(): the batch goes out as ten text-format
// arrays that the server unnests, so a batch of any size is one statement and one round trip.
#include "adapters/postgres/sessions.hpp"

#include <algorithm>
#include <charconv>
#include <functional>
#include <numeric>

namespace sessiond::postgres {

namespace {

const std::string upsert_sql = R"(
insert into user_session (session_id, user_id, data, version, status, is_active, created_at,
                          last_activity_at, expires_at, updated_at, revoked_at)
select u.id, u.uid, u.data, u.version, u.status, u.active, to_timestamp(u.created_ms / 1000.0),
       to_timestamp(u.activity_ms / 1000.0), to_timestamp(u.expires_ms / 1000.0), now(),
       to_timestamp(u.revoked_ms / 1000.0)
from unnest($1::text[], $2::text[], $3::jsonb[], $4::bigint[], $5::text[], $6::boolean[],
            $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[])
  as u(id, uid, data, version, status, active, created_ms, activity_ms, expires_ms, revoked_ms)
)" + std::string(upsert_fence_sql);

constexpr const char* versions_sql = R"(
select u.session_id, u.version, u.status,
       exists (select 1 from session_redis_repair r where r.session_id = u.session_id)
from user_session u where u.session_id = any($1::text[]))";

/// The batch as columns, each a list of text values for array_literal().
struct columns {
  std::vector<field> id, uid, data, version, status, active, created, activity, expires, revoked;

  explicit columns(const std::vector<const session_row*>& rows) {
    for (auto* list :
         {&id, &uid, &data, &version, &status, &active, &created, &activity, &expires, &revoked})
      list->reserve(rows.size());
    for (const session_row* r : rows)
      add(*r);
  }

  void add(const session_row& r) {
    id.emplace_back(r.session_id);
    uid.emplace_back(r.user_id);
    data.emplace_back(r.data);
    version.emplace_back(std::to_string(r.version));
    status.emplace_back(r.status);
    active.emplace_back(r.is_active ? "t" : "f");
    created.emplace_back(std::to_string(r.created_at_ms));
    activity.emplace_back(std::to_string(r.last_activity_at_ms));
    expires.emplace_back(std::to_string(r.expires_at_ms));
    revoked.emplace_back(r.revoked_at_ms == 0 ? field{} : field{std::to_string(r.revoked_at_ms)});
  }

  std::vector<field> params() const {
    std::vector<field> out;
    for (const auto* list :
         {&id, &uid, &data, &version, &status, &active, &created, &activity, &expires, &revoked})
      out.emplace_back(array_literal(*list));
    return out;
  }
};

std::int64_t to_int(const field& f, const char* column) {
  if (!f)
    return 0;
  std::int64_t out = 0;
  auto [end, ec] = std::from_chars(f->data(), f->data() + f->size(), out);
  if (ec != std::errc{} || end != f->data() + f->size())
    throw pg_error(errc::bad_reply, std::string("user_session.") + column + " is not an integer");
  return out;
}

const std::string& required(const field& f, const char* column) {
  if (!f)
    throw pg_error(errc::bad_reply, std::string("user_session.") + column + " is NULL");
  return *f;
}

} // namespace

// The version fence is the architecture's rule: only a higher version replaces a row. A row
// with a pending note in session_redis_repair was written in PostgreSQL while Redis was
// unreachable, so it is newer than what Redis holds: the write-behind leaves it alone.
const char* const upsert_fence_sql = R"(
on conflict (session_id) do update set
  user_id = excluded.user_id, data = excluded.data, version = excluded.version,
  status = excluded.status, is_active = excluded.is_active, created_at = excluded.created_at,
  last_activity_at = excluded.last_activity_at, expires_at = excluded.expires_at,
  updated_at = excluded.updated_at, revoked_at = excluded.revoked_at
where (user_session.version < excluded.version
       or (user_session.version = excluded.version
           and user_session.last_activity_at < excluded.last_activity_at))
  and not exists (select 1 from session_redis_repair r where r.session_id = excluded.session_id)
returning session_id)";

void validate_row(const session_row& r) {
  auto bad = [&](const std::string& why) {
    throw pg_error(errc::invalid_argument, "session " + r.session_id + ": " + why);
  };
  if (r.session_id.empty())
    bad("empty session_id");
  if (r.status != "ACTIVE" && r.status != "REVOKED" && r.status != "EXPIRED")
    bad("unknown status '" + r.status + "'");
  for (const std::string* s : {&r.session_id, &r.user_id, &r.data})
    if (s->find('\0') != std::string::npos)
      bad("a NUL byte in session_id, user_id or data");
}

result fenced_write(client& c, const std::function<result()>& write) {
  if (c.in_transaction()) // the caller's transaction, at the caller's isolation level
    return write();
  for (int attempt = 1;; ++attempt) {
    try {
      return c.transaction([&] {
        c.exec("set transaction isolation level repeatable read");
        return write();
      });
    } catch (const pg_error& e) {
      if (e.sqlstate() != "40001" || attempt >= 5)
        throw;
    }
  }
}

std::size_t written_rows(const result& res, std::vector<std::string>* written_ids) {
  if (written_ids)
    for (const auto& row : res.rows)
      if (!row.empty() && row[0])
        written_ids->push_back(*row[0]);
  return res.rows.size();
}

std::vector<const session_row*> dedupe_batch(const std::vector<session_row>& rows) {
  std::vector<std::size_t> order(rows.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    const auto &x = rows[a], &y = rows[b];
    if (x.session_id != y.session_id)
      return x.session_id < y.session_id;
    return x.version != y.version ? x.version > y.version : a > b;
  });
  std::vector<const session_row*> out;
  out.reserve(rows.size());
  for (std::size_t i : order)
    if (out.empty() || out.back()->session_id != rows[i].session_id)
      out.push_back(&rows[i]);
  return out;
}

std::size_t upsert_sessions(client& c, const std::vector<session_row>& rows,
                            std::vector<std::string>* written_ids) {
  if (rows.empty())
    return 0;
  for (const auto& r : rows)
    validate_row(r);
  auto params = columns(dedupe_batch(rows)).params();
  return written_rows(fenced_write(c, [&] { return c.exec_params(upsert_sql, params); }),
                      written_ids);
}

std::vector<stored_version> load_versions(client& c, const std::vector<std::string>& ids) {
  std::vector<stored_version> out;
  if (ids.empty())
    return out;
  std::vector<field> items(ids.begin(), ids.end());
  result r = c.exec_params(versions_sql, {array_literal(items)});
  out.reserve(r.rows.size());
  for (const auto& f : r.rows) {
    if (f.size() != 4)
      throw pg_error(errc::bad_reply, "user_session version row of the wrong shape");
    out.push_back({required(f[0], "session_id"), to_int(f[1], "version"), required(f[2], "status"),
                   required(f[3], "repair_pending") == "t"});
  }
  return out;
}

const char* const session_row_columns = R"(u.session_id, u.user_id, u.data::text, u.version,
  u.status, u.is_active, (extract(epoch from u.created_at) * 1000)::bigint,
  (extract(epoch from u.last_activity_at) * 1000)::bigint,
  (extract(epoch from u.expires_at) * 1000)::bigint,
  (extract(epoch from u.revoked_at) * 1000)::bigint)";

session_row parse_session_row(const std::vector<field>& f, std::size_t first) {
  if (f.size() < first + 10)
    throw pg_error(errc::bad_reply, "user_session row with " +
                                        std::to_string(f.size() - std::min(first, f.size())) +
                                        " columns");
  auto at = [&](std::size_t i) -> const field& { return f[first + i]; };
  session_row out;
  out.session_id = required(at(0), "session_id");
  out.user_id = required(at(1), "user_id");
  out.data = required(at(2), "data");
  out.version = to_int(at(3), "version");
  out.status = required(at(4), "status");
  out.is_active = required(at(5), "is_active") == "t";
  out.created_at_ms = to_int(at(6), "created_at");
  out.last_activity_at_ms = to_int(at(7), "last_activity_at");
  out.expires_at_ms = to_int(at(8), "expires_at");
  out.revoked_at_ms = to_int(at(9), "revoked_at");
  return out;
}

std::optional<session_row> load_session(client& c, const std::string& session_id) {
  static const std::string sql =
      std::string("select ") + session_row_columns + " from user_session u where u.session_id = $1";
  result r = c.exec_params(sql, {session_id});
  if (r.rows.empty())
    return std::nullopt;
  if (r.rows.front().size() != 10)
    throw pg_error(errc::bad_reply,
                   "user_session row with " + std::to_string(r.rows.front().size()) + " columns");
  return parse_session_row(r.rows.front());
}

std::vector<session_row> load_user_sessions(client& c, const std::string& user_id,
                                            std::int64_t now_ms, std::int64_t limit) {
  static const std::string sql = std::string("select ") + session_row_columns +
                                 " from user_session u where u.user_id = $1 and u.status = 'ACTIVE'"
                                 " and u.expires_at > to_timestamp($2::bigint / 1000.0)"
                                 " order by u.expires_at, u.session_id limit $3::bigint";
  result r = c.exec_params(
      sql, {user_id, std::to_string(now_ms), std::to_string(std::max<std::int64_t>(0, limit))});
  std::vector<session_row> out;
  out.reserve(r.rows.size());
  for (const auto& row : r.rows)
    out.push_back(parse_session_row(row));
  return out;
}

} // namespace sessiond::postgres
