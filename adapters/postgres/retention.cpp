// run_retention(): an advisory lock, a fixed now(), batched DELETEs in two passes, and the audit
// row kept in step with every batch. Why two passes: the partial index user_session_retention_idx
// is keyed on created_at (docs/postgres.md says why), and `created_at < now() - days` follows
// from the criterion whenever last_activity_at >= created_at, so pass 1 walks that index range
// oldest first, each batch starting where the previous one ended (no rescans of dead entries).
// Rows outside that range can still meet the criterion (created_at NULL, or last_activity_at
// before created_at: data sessiond itself never writes); pass 2 finds them by sweeping the heap
// in ranges of `sweep_pages` pages (a TID range scan: each statement reads a bounded slice, and
// no index on last_activity_at is needed, which would cost every session save its HOT update).
#include "adapters/postgres/retention.hpp"

#include <algorithm>
#include <charconv>
#include <ctime>
#include <thread>
#include <utility>

namespace sessiond::postgres {

const char* to_string(retention_status s) {
  switch (s) {
  case retention_status::ran:
    return "ran";
  case retention_status::skipped:
    return "skipped";
  case retention_status::failed:
    return "failed";
  case retention_status::disabled:
    return "disabled";
  }
  return "unknown";
}

namespace {

using steady = std::chrono::steady_clock;
using std::chrono::duration_cast;
using std::chrono::microseconds;
using std::chrono::milliseconds;

constexpr std::int64_t us_per_day = 86'400'000'000;

// $1 = now() of the run, $2 = now() - days: both fixed for the whole run, so every batch
// applies the same criterion and a row that only becomes eligible during the run waits for the
// next one. A NULL in is_active, status or expires_at makes its comparison NULL: the row stays.
#define SESSIOND_RETENTION_CRITERION                                                               \
  "is_active = false and status <> 'ACTIVE' and expires_at < $1::timestamptz and "                 \
  "coalesce(last_activity_at, created_at) < $2::timestamptz"

std::string lock_sql() {
  return std::string("select pg_try_advisory_lock(") + retention_lock_key_sql +
         "), (extract(epoch from least(coalesce($1::timestamptz, now()), now())) * "
         "1000000)::bigint";
}

std::string unlock_sql() {
  return std::string("select pg_advisory_unlock(") + retention_lock_key_sql + ")";
}

constexpr const char* audit_insert_sql =
    "insert into session_retention_audit (started_at, rows_deleted, criterion, actor, node_id, "
    "dry_run) values (clock_timestamp(), 0, $1, $2, $3, $4::boolean) "
    "returning id, (extract(epoch from started_at) * 1000)::bigint";

constexpr const char* audit_finish_sql =
    "update session_retention_audit set finished_at = clock_timestamp(), error = $2, "
    "rows_deleted = case when dry_run then $3::bigint else rows_deleted end where id = $1 "
    "returning (extract(epoch from finished_at) * 1000)::bigint";

// Pass 1, one batch: the oldest eligible rows from $3 on, locked (rows a session save holds
// are skipped, not waited for), deleted by ctid with the criterion checked again on the row
// deleted, and counted into the audit row ($5) in the same transaction. Answers: rows deleted,
// rows picked (fewer than $4: the range is done), the newest created_at picked (where the next
// batch starts, so no batch rescans the dead index entries of the ones before).
constexpr const char* range_delete_sql =
    "with picked as (select array_agg(ctid) as ids, count(*) as n, max(created_at) as last from ("
    "select ctid, created_at from user_session where " SESSIOND_RETENTION_CRITERION
    " and created_at < $2::timestamptz and created_at >= $3::timestamptz"
    " order by created_at limit $4 for update skip locked) s),"
    " gone as (delete from user_session where ctid = any((select ids from picked)::tid[]) "
    "and " SESSIOND_RETENTION_CRITERION " returning 1),"
    " audited as (update session_retention_audit set rows_deleted = rows_deleted + "
    "(select count(*) from gone) where id = $5)"
    " select (select count(*) from gone), n, (extract(epoch from last) * 1000000)::bigint"
    " from picked";

// Pass 2, one slice [$3, $4) of heap pages: only the rows pass 1 cannot reach. Answers: rows
// deleted, rows picked (a full batch: the slice may hold more).
constexpr const char* sweep_delete_sql =
    "with picked as (select array_agg(ctid) as ids, count(*) as n from ("
    "select ctid from user_session where ctid >= $3::tid and ctid < $4::tid "
    "and " SESSIOND_RETENTION_CRITERION " and (created_at >= $2::timestamptz or created_at is null)"
    " limit $5 for update skip locked) s),"
    " gone as (delete from user_session where ctid = any((select ids from picked)::tid[]) "
    "and " SESSIOND_RETENTION_CRITERION " returning 1),"
    " audited as (update session_retention_audit set rows_deleted = rows_deleted + "
    "(select count(*) from gone) where id = $6)"
    " select (select count(*) from gone), n from picked";

constexpr const char* range_count_sql =
    "select count(*) from (select 1 from user_session where " SESSIOND_RETENTION_CRITERION
    " and created_at < $2::timestamptz limit $3) s";

constexpr const char* sweep_count_sql =
    "select count(*) from (select 1 from user_session where ctid >= $3::tid and ctid < $4::tid"
    " and " SESSIOND_RETENTION_CRITERION
    " and (created_at >= $2::timestamptz or created_at is null) limit $5) s";

constexpr const char* pages_sql =
    "select pg_relation_size('user_session') / current_setting('block_size')::bigint";

#undef SESSIOND_RETENTION_CRITERION

std::int64_t to_int(const field& f) {
  std::int64_t v = 0;
  if (!f)
    throw pg_error(errc::bad_reply, "retention: unexpected NULL");
  auto [end, ec] = std::from_chars(f->data(), f->data() + f->size(), v);
  if (ec != std::errc{} || end != f->data() + f->size())
    throw pg_error(errc::bad_reply, "retention: not an integer: " + *f);
  return v;
}

std::int64_t first_int(const result& r) {
  if (r.rows.empty() || r.rows[0].empty())
    throw pg_error(errc::bad_reply, "retention: empty result");
  return to_int(r.rows[0][0]);
}

std::int64_t wall_ms() {
  return duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string tid(std::int64_t page) {
  return "(" + std::to_string(page) + ",0)";
}

void check(const retention_params& p) {
  auto bad = [](const char* what) { throw pg_error(errc::invalid_argument, what); };
  if (p.days < 1 || p.days > 36500)
    bad("retention: days must be in [1, 36500]");
  if (p.batch_size < 1 || p.max_rows_per_run < 1 || p.sweep_pages < 1)
    bad("retention: batch_size, max_rows_per_run and sweep_pages must be >= 1");
  if (p.pause.count() < 0 || p.lock_timeout.count() < 0 || p.statement_timeout.count() < 0 ||
      p.count_statement_timeout.count() < 0)
    bad("retention: pause and timeouts must be >= 0");
}

/// One run in progress: its parameters, its fixed instants and what it did so far.
struct run {
  client& c;
  const retention_params& p;
  const retention_hooks& hooks;
  retention_report& r;
  std::string as_of, cutoff; ///< timestamptz literals: $1 and $2 of every statement
  std::string audit;         ///< the audit row id as text
  bool wrote = false;        ///< the last statement deleted rows

  bool cancelled() const { return hooks.cancelled && hooks.cancelled(); }
  std::int64_t left() const { return p.max_rows_per_run - r.rows_deleted; }

  /// Sleeps for the pause after a batch that deleted rows (a statement that only read needs no
  /// breather), in slices, so a cancellation is seen within ~20 ms.
  void pause() const {
    if (!wrote)
      return;
    auto until = steady::now() + p.pause;
    while (!cancelled()) {
      auto now = steady::now();
      if (now >= until)
        return;
      std::this_thread::sleep_for(std::min<steady::duration>(until - now, milliseconds(20)));
    }
  }

  /// One statement in its own transaction with SET LOCAL timeouts; counts and reports it.
  result batch(const char* sql, const std::vector<field>& params, bool sweep,
               milliseconds statement_timeout) {
    auto t0 = steady::now();
    result out = c.transaction([&] {
      c.exec_params(
          "select set_config('lock_timeout', $1, true), "
          "set_config('statement_timeout', $2, true)",
          {std::to_string(p.lock_timeout.count()), std::to_string(statement_timeout.count())});
      return c.exec_params(sql, params);
    });
    retention_batch b{sweep, first_int(out), duration_cast<microseconds>(steady::now() - t0)};
    r.rows_deleted += b.rows;
    r.batches += 1;
    wrote = !p.dry_run && b.rows > 0;
    r.longest_batch_us = std::max<std::int64_t>(r.longest_batch_us, b.took.count());
    if (hooks.on_batch)
      hooks.on_batch(b);
    return out;
  }

  /// Pass 1: batches along the index range, oldest first. False when stopped early.
  bool delete_range() {
    std::string from = "-infinity";
    for (;;) {
      pause();
      if (cancelled() || left() <= 0)
        return false;
      auto n = std::min(p.batch_size, left());
      result res = batch(range_delete_sql, {as_of, cutoff, from, std::to_string(n), audit}, false,
                         p.statement_timeout);
      // Fewer picked than asked: the range is done. None deleted of a full pick (every row
      // picked was saved again meanwhile): move on rather than pick the same rows forever.
      if (to_int(res.rows[0].at(1)) < n || to_int(res.rows[0].at(0)) == 0)
        return true;
      from = timestamptz_literal(to_int(res.rows[0].at(2)));
    }
  }

  /// Pass 2: slice by slice over the heap pages the table had when the pass began; a slice
  /// that filled a whole batch is done again before moving on.
  bool sweep(bool dry) {
    std::int64_t pages = first_int(c.exec(pages_sql));
    for (std::int64_t lo = 0; lo < pages;) {
      pause();
      if (cancelled() || left() <= 0)
        return false;
      auto n = std::min(p.batch_size, left());
      std::vector<field> params{as_of, cutoff, tid(lo), tid(lo + p.sweep_pages), std::to_string(n)};
      if (!dry)
        params.emplace_back(audit);
      result res =
          batch(dry ? sweep_count_sql : sweep_delete_sql, params, true, p.statement_timeout);
      if (dry || to_int(res.rows[0].at(1)) < n || to_int(res.rows[0].at(0)) == 0)
        lo += p.sweep_pages;
    }
    return true;
  }

  /// Dry pass 1: one count statement (no locks) capped at the maximum.
  void count_range() {
    batch(range_count_sql, {as_of, cutoff, std::to_string(p.max_rows_per_run)}, false,
          p.count_statement_timeout);
  }

  /// Both passes; sets reached_max or error when the run stops early.
  void execute() {
    bool complete = false;
    if (p.dry_run) {
      count_range();
      complete = sweep(true);
    } else {
      complete = delete_range() && sweep(false);
    }
    r.rows_deleted = std::min(r.rows_deleted, p.max_rows_per_run);
    if (!complete && cancelled())
      r.error = "cancelled after " + std::to_string(r.rows_deleted) + " rows";
    else if (!complete)
      r.reached_max = true;
  }
};

/// Takes the lock and fixes now(); false when another session holds the lock.
bool lock_and_fix_now(client& c, const retention_params& p, retention_report& r) {
  field as_of = p.as_of_us ? field{timestamptz_literal(*p.as_of_us)} : field{};
  result res = c.exec_params(lock_sql(), {as_of});
  if (res.rows.size() != 1 || res.rows[0].size() != 2 || !res.rows[0][0])
    throw pg_error(errc::bad_reply, "retention: unexpected reply to the lock query");
  if (*res.rows[0][0] != "t")
    return false;
  r.as_of_us = to_int(res.rows[0][1]);
  return true;
}

void write_audit_start(run& x) {
  x.r.criterion = retention_criterion(x.p.days) + "; now() = " + x.as_of +
                  ", now() - days = " + x.cutoff + "; batch_size " +
                  std::to_string(x.p.batch_size) + ", max_rows_per_run " +
                  std::to_string(x.p.max_rows_per_run);
  result res = x.c.exec_params(audit_insert_sql, {x.r.criterion, x.p.actor, x.p.node_id,
                                                  std::string(x.p.dry_run ? "true" : "false")});
  if (res.rows.size() != 1 || res.rows[0].size() != 2)
    throw pg_error(errc::bad_reply, "retention: unexpected reply to the audit insert");
  x.r.audit_id = to_int(res.rows[0][0]);
  x.r.started_ms = to_int(res.rows[0][1]);
  x.audit = std::to_string(x.r.audit_id);
}

/// Sets finished_at and error; tries twice, as the first try may only reconnect.
void write_audit_finish(client& c, retention_report& r) {
  field error = r.error.empty() ? field{} : field{r.error};
  for (int attempt = 0; attempt < 2; ++attempt) {
    try {
      result res = c.exec_params(
          audit_finish_sql, {std::to_string(r.audit_id), error, std::to_string(r.rows_deleted)});
      r.finished_ms = first_int(res);
      return;
    } catch (const pg_error& e) {
      if (attempt == 1 || e.code() != errc::connection_lost)
        r.error += std::string(r.error.empty() ? "" : "; ") + "audit row not finished: " + e.what();
      if (e.code() != errc::connection_lost)
        return;
    }
  }
}

void unlock_quietly(client& c, int locked_pid) {
  if (c.backend_pid() != locked_pid)
    return; // the connection that held the lock is gone, and the lock with it
  try {
    c.exec(unlock_sql());
  } catch (const pg_error&) { // released when the session ends in any case
  }
}

void locked_run(client& c, const retention_params& p, const retention_hooks& hooks,
                retention_report& r) {
  run x{c,
        p,
        hooks,
        r,
        timestamptz_literal(r.as_of_us),
        timestamptz_literal(r.as_of_us - p.days * us_per_day),
        {}};
  try {
    write_audit_start(x);
    x.execute();
  } catch (const std::exception& e) {
    r.error = e.what();
  }
  if (r.audit_id != 0)
    write_audit_finish(c, r);
  r.status = r.error.empty() ? retention_status::ran : retention_status::failed;
}

} // namespace

std::string retention_criterion(std::int64_t days) {
  return "is_active = false AND status <> 'ACTIVE' AND expires_at < now() AND "
         "coalesce(last_activity_at, created_at) < now() - " +
         std::to_string(days) + " days";
}

retention_report run_retention(client& c, const retention_params& p, const retention_hooks& hooks) {
  retention_report r;
  r.dry_run = p.dry_run;
  r.days = p.days;
  r.node_id = p.node_id;
  r.started_ms = wall_ms();
  auto t0 = steady::now();
  try {
    check(p);
    if (!lock_and_fix_now(c, p, r)) {
      r.status = retention_status::skipped;
    } else {
      int locked_pid = c.backend_pid();
      locked_run(c, p, hooks, r);
      unlock_quietly(c, locked_pid);
    }
  } catch (const std::exception& e) {
    r.status = retention_status::failed;
    r.error = e.what();
  }
  r.duration_ms = duration_cast<milliseconds>(steady::now() - t0).count();
  if (r.finished_ms == 0)
    r.finished_ms = r.started_ms + r.duration_ms;
  return r;
}

std::string explain_retention_batch(client& c, const retention_params& p) {
  check(p);
  field as_of = p.as_of_us ? field{timestamptz_literal(*p.as_of_us)} : field{};
  auto now_us =
      first_int(c.exec_params("select (extract(epoch from least(coalesce($1::timestamptz, now()), "
                              "now())) * 1000000)::bigint",
                              {as_of}));
  c.exec("begin");
  try {
    result r = c.exec_params(std::string("explain (analyze, buffers) ") + range_delete_sql,
                             {timestamptz_literal(now_us),
                              timestamptz_literal(now_us - p.days * us_per_day), "-infinity",
                              std::to_string(p.batch_size), "0"});
    c.exec("rollback");
    std::string out;
    for (const auto& row : r.rows)
      out += row.empty() ? "" : row[0].value_or("") + "\n";
    return out;
  } catch (...) {
    try {
      if (c.in_transaction())
        c.exec("rollback");
    } catch (const pg_error&) { // the first error is the one worth reporting
    }
    throw;
  }
}

std::optional<int> parse_hh_mm(std::string_view s) {
  auto digit = [&](std::size_t i) { return s[i] >= '0' && s[i] <= '9'; };
  if (s.size() != 5 || s[2] != ':' || !digit(0) || !digit(1) || !digit(3) || !digit(4))
    return std::nullopt;
  int h = (s[0] - '0') * 10 + (s[1] - '0');
  int m = (s[3] - '0') * 10 + (s[4] - '0');
  if (h > 23 || m > 59)
    return std::nullopt;
  return h * 60 + m;
}

namespace {
constexpr std::int64_t day_ms = 86'400'000;
} // namespace

bool retention_ran_since(client& c, std::int64_t since_ms, bool count_dry) {
  auto r = c.exec_params("select exists (select 1 from session_retention_audit where "
                         "started_at >= $1::timestamptz and error is null and "
                         "(not dry_run or $2::boolean))",
                         {timestamptz_literal(since_ms * 1000), count_dry ? "true" : "false"});
  return !r.rows.empty() && r.rows[0][0] == std::optional<std::string>("t");
}

std::int64_t next_retention_run_ms(std::string_view hh_mm, std::int64_t now_ms) {
  auto minutes = parse_hh_mm(hh_mm);
  if (!minutes)
    throw pg_error(errc::invalid_argument, "retention.at must be HH:MM from 00:00 to 23:59, not '" +
                                               std::string(hh_mm) + "'");
  std::int64_t day = now_ms / day_ms - (now_ms % day_ms < 0 ? 1 : 0); // floor, before 1970 too
  std::int64_t at = day * day_ms + std::int64_t{*minutes} * 60'000;
  return at > now_ms ? at : at + day_ms;
}

std::int64_t last_retention_run_ms(std::string_view hh_mm, std::int64_t now_ms) {
  return next_retention_run_ms(hh_mm, now_ms) - day_ms;
}

std::string timestamptz_literal(std::int64_t us) {
  std::int64_t secs = us / 1'000'000;
  std::int64_t frac = us % 1'000'000;
  if (frac < 0) {
    frac += 1'000'000;
    secs -= 1;
  }
  std::time_t t = static_cast<std::time_t>(secs);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02d %02d:%02d:%02d.%06lld+00", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<long long>(frac));
  return buf;
}

} // namespace sessiond::postgres
