// retention: waits for retention.at (looking at the injected clock at least every max_wait),
// catches up once after start-up when the last retention.at passed without a run (see
// retention_options::catch_up), runs postgres::run_retention on its own connection, and records
// each run in the metrics, in retention_info and in one log line. Runs on request too. No handler
// lets an exception out.
#include "actors/retention.hpp"

#include "adapters/metrics/helpers.hpp"
#include "adapters/metrics/registry.hpp"

#include <caf/actor_system.hpp>
#include <caf/spawn_options.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <ctime>

namespace sessiond::actors {

using messages::retention_report;
using postgres::retention_status;
using self_ptr = messages::retention_actor::stateful_pointer<retention_state>;

// --- options, metrics, JSON ------------------------------------------------------------------

retention_options make_retention_options(const config::config& cfg) {
  const auto& r = cfg.retention;
  retention_options o;
  o.enabled = r.enabled;
  o.dry_run = r.dry_run;
  o.at = r.at;
  o.catch_up = r.catch_up;
  o.params.days = r.days;
  o.params.batch_size = r.batch_size;
  o.params.pause = std::chrono::milliseconds(r.pause_ms);
  o.params.max_rows_per_run = r.max_rows_per_run;
  o.params.node_id = cfg.node.id;
  return o;
}

namespace {

using metrics::add_counter;
using metrics::add_gauge;

constexpr const char* runs_name = "sessiond_retention_runs_total";
constexpr const char* runs_help =
    "Retention runs on this node by outcome: success, failure, skipped (another node held the "
    "retention lock).";

} // namespace

retention_metrics::retention_metrics(metrics::Registry& reg)
    : runs_success(add_counter(reg, runs_name, runs_help, {{"outcome", "success"}})),
      runs_failure(add_counter(reg, runs_name, runs_help, {{"outcome", "failure"}})),
      runs_skipped(add_counter(reg, runs_name, runs_help, {{"outcome", "skipped"}})),
      rows_deleted(add_counter(reg, "sessiond_retention_rows_deleted_total",
                               "user_session rows deleted by retention runs of this node.")),
      last_success_timestamp(add_gauge(reg, "sessiond_retention_last_success_timestamp_seconds",
                                       "Unix time the last successful retention run of this node "
                                       "finished (dry runs included); 0 before the first.")),
      last_duration(add_gauge(reg, "sessiond_retention_last_duration_seconds",
                              "Duration of the last retention run of this node that was not "
                              "skipped.")),
      failures(add_counter(reg, "sessiond_retention_failures_total",
                           "Retention runs of this node that stopped on an error or at shutdown.")),
      last_run_rows(add_gauge(reg, "sessiond_retention_last_run_rows",
                              "Rows the last retention run of this node deleted (a dry run: would "
                              "have deleted).")) {}

void retention_metrics::record(const retention_report& r) {
  switch (r.status) {
  case retention_status::skipped:
    runs_skipped.Increment();
    return;
  case retention_status::disabled:
    return;
  case retention_status::ran:
    runs_success.Increment();
    last_success_timestamp.Set(static_cast<double>(r.finished_ms) / 1000.0);
    break;
  case retention_status::failed:
    runs_failure.Increment();
    failures.Increment();
    break;
  }
  if (!r.dry_run)
    rows_deleted.Increment(static_cast<double>(r.rows_deleted));
  last_run_rows.Set(static_cast<double>(r.rows_deleted));
  last_duration.Set(static_cast<double>(r.duration_ms) / 1000.0);
}

namespace {

/// Epoch ms as RFC 3339 UTC with milliseconds, e.g. "2026-11-21T03:30:00.123Z".
std::string rfc3339(std::int64_t ms) {
  std::int64_t secs = ms / 1000 - (ms % 1000 < 0 ? 1 : 0);
  auto frac = static_cast<int>(ms - secs * 1000);
  std::time_t t = static_cast<std::time_t>(secs);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
  return buf;
}

nlohmann::json or_null(bool present, nlohmann::json value) {
  return present ? std::move(value) : nlohmann::json();
}

} // namespace

nlohmann::json retention_report_json(const retention_report& r) {
  nlohmann::json j = {
      {"status", postgres::to_string(r.status)},
      {"dry_run", r.dry_run},
      {"rows_deleted", r.rows_deleted},
      {"batches", r.batches},
      {"reached_max", r.reached_max},
      {"started_at", rfc3339(r.started_ms)},
      {"finished_at", rfc3339(r.finished_ms)},
      {"duration_ms", r.duration_ms},
      {"longest_batch_ms", static_cast<double>(r.longest_batch_us) / 1000.0},
      {"as_of", or_null(r.as_of_us != 0, postgres::timestamptz_literal(r.as_of_us))},
      {"days", r.days},
      {"criterion", or_null(!r.criterion.empty(), r.criterion)},
      {"actor", "sessiond:retention"},
      {"node_id", r.node_id},
      {"error", or_null(!r.error.empty(), r.error)},
      {"audit_id", or_null(r.audit_id != 0, r.audit_id)},
  };
  return j;
}

std::string retention_log_line(const retention_report& r) {
  std::string line = "retention: ";
  switch (r.status) {
  case retention_status::disabled:
    return line + "disabled (retention.enabled = false), nothing deleted";
  case retention_status::skipped:
    return line + "skipped: another node's run holds the retention lock";
  case retention_status::ran:
    line += "ran";
    break;
  case retention_status::failed:
    line += "FAILED";
    break;
  }
  line += r.dry_run ? ", dry run: " + std::to_string(r.rows_deleted) + " rows eligible"
                    : ", deleted " + std::to_string(r.rows_deleted) + " rows";
  line += " in " + std::to_string(r.batches) + " statements, " + std::to_string(r.duration_ms) +
          " ms (longest " + std::to_string(r.longest_batch_us / 1000) + " ms), " +
          std::to_string(r.days) + " days, audit id " + std::to_string(r.audit_id);
  if (r.reached_max)
    line += "; stopped at retention.max_rows_per_run, the rest waits for the next run";
  if (!r.error.empty())
    line += ": " + r.error;
  return line;
}

// --- the actor -------------------------------------------------------------------------------

namespace {

retention_report disabled_report(const retention_state& st) {
  retention_report r;
  r.status = retention_status::disabled;
  r.days = st.opts->params.days;
  r.node_id = st.opts->params.node_id;
  r.started_ms = r.finished_ms = st.clock->now_ms();
  return r;
}

retention_report failed_report(const retention_state& st, bool dry, const std::string& why) {
  retention_report r = disabled_report(st);
  r.status = retention_status::failed;
  r.dry_run = dry;
  r.error = why;
  return r;
}

/// The run itself on the actor's connection (opened on first use).
retention_report run_on_db(retention_state& st, bool dry) {
  const auto& o = *st.opts;
  if (!st.db)
    st.db.emplace(o.db); // throws pg_error when PostgreSQL is unreachable
  auto params = o.params;
  params.dry_run = dry;
  auto hooks = o.hooks;
  hooks.cancelled = [stop = o.stop, also = o.hooks.cancelled] {
    return (stop && stop->load()) || (also && also());
  };
  return postgres::run_retention(*st.db, params, hooks);
}

retention_report run_now(self_ptr self, bool dry_requested) {
  auto& st = self->state;
  const auto& o = *st.opts;
  bool dry = dry_requested || o.dry_run;
  if (!o.enabled && !dry)
    return disabled_report(st);
  if (o.stop && o.stop->load())
    return failed_report(st, dry, "retention: not started, the node is stopping");
  st.info->update([](messages::retention_info::snapshot& s) { s.running = true; });
  retention_report r;
  try {
    r = run_on_db(st, dry);
  } catch (const std::exception& e) {
    r = failed_report(st, dry, std::string("retention: ") + e.what());
  }
  st.meters->record(r);
  st.info->update([&](messages::retention_info::snapshot& s) {
    s.running = false;
    s.last = r;
    if (r.status == retention_status::ran)
      s.last_success_ms = r.finished_ms;
  });
  return r;
}

void log_run(const retention_state& st, const retention_report& r) {
  if (!st.opts->log)
    return;
  bool bad = r.status == retention_status::failed;
  st.opts->log(bad ? "warn" : "info", retention_log_line(r));
}

/// A scheduled run this close after the catch-up check makes the catch-up pointless.
constexpr std::int64_t catch_up_margin_ms = 3'600'000;

/// Waits for the next tick: until the due time (the catch-up check's, when it comes first), but
/// never longer than max_wait.
void wait_for_due(self_ptr self) {
  auto& st = self->state;
  auto due = st.catch_up_ms != 0 ? std::min(st.next_run_ms, st.catch_up_ms) : st.next_run_ms;
  auto left = due - st.clock->now_ms();
  auto wait = std::clamp<std::int64_t>(left, 1, st.opts->max_wait.count());
  self->delayed_send(self, std::chrono::milliseconds(wait), messages::retention_tick_atom::value);
}

/// The catch-up check: runs now when no run of any node started since the scheduled time before
/// start-up (a node that was down or restarting at retention.at would otherwise wait a day).
void catch_up(self_ptr self) {
  auto& st = self->state;
  const auto& o = *st.opts;
  bool ran = false;
  try {
    if (!st.db)
      st.db.emplace(o.db);
    ran = postgres::retention_ran_since(*st.db, st.missed_due_ms, o.dry_run);
  } catch (const std::exception& e) {
    if (o.log)
      o.log("warn", std::string("retention: catch-up check failed, the next run is the scheduled "
                                "one at ") +
                        rfc3339(st.next_run_ms) + ": " + e.what());
    return;
  }
  if (ran)
    return;
  if (o.log)
    o.log("info", "retention: catch-up: no run started since " + rfc3339(st.missed_due_ms) +
                      " (retention.at), running now");
  log_run(st, run_now(self, false));
}

void on_tick(self_ptr self) {
  auto& st = self->state;
  if (st.next_run_ms == 0)
    return;
  auto due = st.next_run_ms;
  if (st.clock->now_ms() >= due) {
    st.catch_up_ms = 0; // the scheduled run is the one the catch-up would have made up for
    log_run(st, run_now(self, false));
    // From the due time, not the clock: a tick that came early by the clock never runs twice.
    st.next_run_ms =
        postgres::next_retention_run_ms(st.opts->at, std::max(st.clock->now_ms(), due));
    st.info->update([&](messages::retention_info::snapshot& s) { s.next_run_ms = st.next_run_ms; });
  } else if (st.catch_up_ms != 0 && st.clock->now_ms() >= st.catch_up_ms) {
    st.catch_up_ms = 0;
    catch_up(self);
  }
  wait_for_due(self);
}

void start_schedule(self_ptr self) {
  auto& st = self->state;
  try {
    if (st.opts->enabled)
      st.next_run_ms = postgres::next_retention_run_ms(st.opts->at, st.clock->now_ms());
    auto check = st.clock->now_ms() + st.opts->catch_up_delay.count();
    if (st.next_run_ms != 0 && st.opts->catch_up && st.next_run_ms - check > catch_up_margin_ms) {
      st.catch_up_ms = check;
      st.missed_due_ms = postgres::last_retention_run_ms(st.opts->at, st.clock->now_ms());
    }
  } catch (const std::exception& e) { // config validation makes this unreachable
    if (st.opts->log)
      st.opts->log("warn", std::string("retention: not scheduled: ") + e.what());
  }
  st.info->update([&](messages::retention_info::snapshot& s) {
    s.enabled = st.opts->enabled;
    s.next_run_ms = st.next_run_ms;
  });
  if (st.next_run_ms != 0)
    wait_for_due(self);
}

} // namespace

messages::retention_actor::behavior_type retention(self_ptr self,
                                                   std::shared_ptr<const retention_options> opts,
                                                   std::shared_ptr<messages::retention_info> info,
                                                   std::shared_ptr<retention_metrics> meters,
                                                   const model::clock* clock) {
  auto& st = self->state;
  st.opts = std::move(opts);
  st.info = std::move(info);
  st.meters = std::move(meters);
  st.clock = clock;
  start_schedule(self);
  return {
      [=](messages::retention_run_atom, bool dry) -> retention_report {
        try {
          auto r = run_now(self, dry);
          log_run(self->state, r);
          return r;
        } catch (const std::exception& e) { // run_now catches the run's own; this is the rest
          return failed_report(self->state, dry, std::string("retention: ") + e.what());
        }
      },
      [=](messages::retention_tick_atom) {
        try {
          on_tick(self);
        } catch (const std::exception& e) { // keep the schedule alive whatever happened
          if (self->state.opts->log)
            self->state.opts->log("warn", std::string("retention: tick failed: ") + e.what());
          wait_for_due(self);
        }
      },
  };
}

messages::retention_actor spawn_retention(caf::actor_system& sys,
                                          std::shared_ptr<const retention_options> opts,
                                          metrics::Registry& registry,
                                          std::shared_ptr<messages::retention_info> info,
                                          const model::clock& clock) {
  auto meters = std::make_shared<retention_metrics>(registry);
  return sys.spawn<caf::detached>(retention, std::move(opts), std::move(info), std::move(meters),
                                  &clock);
}

} // namespace sessiond::actors
