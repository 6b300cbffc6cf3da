// Shared by the retention tests: a scratch schema with the migrations applied, generated
// user_session tables, and the criterion evaluated independently in SQL with a digest of every
// row, to compare a table after a run with the table before it row by row.
#pragma once

#include "adapters/postgres/client.hpp"
#include "adapters/postgres/migrate.hpp"
#include "adapters/postgres/retention.hpp"
#include "tests/integration/pg_schema.hpp"

#include <catch2/catch.hpp>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace sessiond::test::retention {

using namespace sessiond::postgres;

/// A schema of its own for one test, dropped (with everything in it) at the end. The retention
/// lock is keyed on the table's oid, so tests in other schemas never see each other's lock.
struct scratch_schema : test::pg_schema {
  scratch_schema() : pg_schema("r_") {}
  /// A connection in the schema, TimeZone UTC so that `interval '1 day'` is 24 hours.
  client connect() const {
    client c(options());
    c.exec("set timezone = 'UTC'");
    return c;
  }
  client migrated() const {
    client c = connect();
    apply_migrations(c, std::filesystem::path(SESSIOND_MIGRATIONS_DIR));
    return c;
  }
};

inline std::string scalar(client& c, const std::string& sql, const std::vector<field>& p = {}) {
  result r = c.exec_params(sql, p);
  REQUIRE(r.rows.size() == 1);
  REQUIRE(r.rows[0].size() == 1);
  return r.rows[0][0].value_or("<NULL>");
}

inline long long count(client& c, const std::string& sql, const std::vector<field>& p = {}) {
  return std::stoll(scalar(c, sql, p));
}

/// Rows whose session_id starts with `prefix`.
inline long long remaining(client& c, const std::string& prefix) {
  return count(c, "select count(*) from user_session where session_id like $1", {prefix + "%"});
}

inline bool exists(client& c, const std::string& id) {
  return count(c, "select count(*) from user_session where session_id = $1", {id}) == 1;
}

/// The server's now() in epoch microseconds.
inline std::int64_t server_now_us(client& c) {
  return count(c, "select (extract(epoch from now()) * 1000000)::bigint");
}

/// Every combination of is_active (2) × status (3) × expires_at (8) × created_at (8) ×
/// last_activity_at (8), `replicas` times over (3072 rows each). The eight times of each column:
/// NULL, far on the eligible side, 1 s before, 1 µs before, exactly at, 1 µs after, 1 s after
/// the boundary, and far on the kept side; the boundary is `as_of` for expires_at and
/// as_of - days for the other two. Ids read g<replica>-<active>-<status>-<e>-<c>-<l>.
inline long long fill_grid(client& c, std::int64_t as_of_us, std::int64_t days, int replicas) {
  static const char* sql = R"(
with p as (select $1::timestamptz as t, $1::timestamptz - $2::int * interval '1 day' as cut),
offs(k, off) as (values (0, null::interval), (1, null), (2, interval '-1 second'),
  (3, interval '-1 microsecond'), (4, interval '0'), (5, interval '1 microsecond'),
  (6, interval '1 second'), (7, null))
insert into user_session (session_id, user_id, data, version, status, is_active, created_at,
                          last_activity_at, expires_at, updated_at)
select format('g%s-%s-%s-%s-%s-%s', r, a.k, st.k, e.k, cr.k, la.k), 'u' || (r % 101),
  jsonb_build_object('r', r, 'e', e.k), 1 + r % 3, st.v, a.v,
  case cr.k when 0 then null when 1 then cut - interval '30 days' - r * interval '1 second'
    when 7 then t - interval '1 day' + r * interval '1 second' else cut + cr.off end,
  case la.k when 0 then null when 1 then cut - interval '20 days' - r * interval '1 second'
    when 7 then t - interval '2 hours' + r * interval '1 second' else cut + la.off end,
  case e.k when 0 then null when 1 then t - interval '100 days' - r * interval '1 second'
    when 7 then t + interval '1 day' + r * interval '1 second' else t + e.off end,
  t
from p, generate_series(1, $3::int) r, (values (true, 0), (false, 1)) a(v, k),
  (values ('ACTIVE', 0), ('REVOKED', 1), ('EXPIRED', 2)) st(v, k), offs e, offs cr, offs la)";
  return static_cast<long long>(c.exec_params(sql, {timestamptz_literal(as_of_us),
                                                    std::to_string(days), std::to_string(replicas)})
                                    .affected);
}

/// `n` rows that meet the criterion at any now() after the call (ids e1…en, oldest first) and
/// `n` active ones (a1…an).
inline void fill_simple(client& c, long long n) {
  c.exec_params(R"(
insert into user_session (session_id, user_id, data, version, status, is_active, created_at,
                          last_activity_at, expires_at, updated_at)
select 'e' || g, 'u' || (g % 50), '{"k": 1}'::jsonb, 1, case when g % 2 = 0 then 'REVOKED' else
  'EXPIRED' end, false, now() - interval '200 days' + g * interval '1 millisecond',
  now() - interval '100 days', now() - interval '99 days', now()
from generate_series(1, $1::bigint) g
union all
select 'a' || g, 'u' || (g % 50), '{"k": 2}'::jsonb, 1, 'ACTIVE', true, now() - interval '200 days',
  now() - interval '1 minute', now() + interval '1 hour', now()
from generate_series(1, $1::bigint) g)",
                {std::to_string(n)});
}

/// Records, in retention_expected, for every row: the criterion evaluated at `as_of` with the
/// issue's own words (now() replaced by as_of), and an md5 digest of the whole row.
inline void snapshot_expected(client& c, std::int64_t as_of_us, std::int64_t days) {
  c.exec("drop table if exists retention_expected");
  c.exec_params(R"(
create table retention_expected as
select session_id,
  coalesce(is_active = false and status <> 'ACTIVE' and expires_at < $1::timestamptz
    and coalesce(last_activity_at, created_at) < $1::timestamptz - $2::int * interval '1 day',
    false) as eligible,
  md5(u::text) as digest
from user_session u)",
                {timestamptz_literal(as_of_us), std::to_string(days)});
  c.exec("alter table retention_expected add primary key (session_id)");
}

/// The table now against retention_expected.
struct verdict {
  long long rows = 0;         ///< rows in retention_expected
  long long eligible = 0;     ///< of which eligible
  long long gone = 0;         ///< rows no longer in user_session
  long long wrongly_gone = 0; ///< gone although not eligible
  long long wrongly_kept = 0; ///< eligible and still there
  long long changed = 0;      ///< still there with another digest
  long long extra = 0;        ///< rows in user_session that were not there before
};

inline verdict compare(client& c) {
  result r = c.exec(R"(
select count(*), count(*) filter (where e.eligible), count(*) filter (where u.session_id is null),
  count(*) filter (where not e.eligible and u.session_id is null),
  count(*) filter (where e.eligible and u.session_id is not null),
  count(*) filter (where u.session_id is not null and md5(u::text) <> e.digest),
  (select count(*) from user_session x where not exists
     (select 1 from retention_expected y where y.session_id = x.session_id))
from retention_expected e left join user_session u using (session_id))");
  REQUIRE(r.rows.size() == 1);
  auto v = [&](int i) { return std::stoll(r.rows[0][i].value_or("-1")); };
  return {v(0), v(1), v(2), v(3), v(4), v(5), v(6)};
}

/// Session ids that are gone although not eligible or kept although eligible (diagnostics).
inline std::string mismatches(client& c) {
  result r = c.exec(R"(
select string_agg(session_id || (case when e.eligible then ' kept' else ' gone' end), ', ')
from (select e.* from retention_expected e left join user_session u using (session_id)
      where e.eligible = (u.session_id is not null) limit 10) e)");
  return r.rows.empty() ? "" : r.rows[0][0].value_or("");
}

/// The audit row of `id` as text fields: rows_deleted, dry_run, error, finished.
struct audit_row {
  long long rows_deleted = -1;
  bool dry_run = false;
  std::optional<std::string> error;
  bool finished = false;
  std::string criterion, actor, node_id;
};

inline audit_row audit(client& c, std::int64_t id) {
  result r = c.exec_params("select rows_deleted, dry_run, error, finished_at is not null, "
                           "criterion, actor, node_id from session_retention_audit where id = $1",
                           {std::to_string(id)});
  REQUIRE(r.rows.size() == 1);
  const auto& f = r.rows[0];
  return {std::stoll(*f[0]), *f[1] == "t", f[2], *f[3] == "t", *f[4], *f[5], *f[6]};
}

} // namespace sessiond::test::retention
