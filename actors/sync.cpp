// sync: runs sync_engine every interval (start to start), when the backlog passes max_dirty and
// on request; paces retries with backoff and a circuit breaker while PostgreSQL (or Redis)
// fails. Nothing is lost while it waits: the dirty marks stay in Redis until a run writes them.
#include "actors/sync.hpp"

#include <caf/actor_system.hpp>
#include <caf/spawn_options.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include <algorithm>

namespace sessiond::actors {

using messages::sync_report;
using self_ptr = messages::sync_actor::stateful_pointer<sync_state>;

namespace {

void log(const sync_state& st, const char* level, const std::string& line) {
  if (st.opts->log)
    st.opts->log(level, line);
}

/// Records a failed attempt in the circuit breaker; returns when the next one may start.
std::int64_t retry_after_failure(sync_state& st, std::int64_t now) {
  std::uniform_real_distribution<double> unit{0.0, 1.0};
  return st.circuit.on_failure(now, unit(st.random));
}

sync_report run_once(self_ptr self) {
  auto& st = self->state;
  auto started = std::chrono::steady_clock::now();
  auto started_ms = st.clock->now_ms();
  sync_report rep;
  bool postgres_failed = false;
  try {
    auto c = st.engine->run();
    rep.ok = true;
    rep.synced = c.written;
    rep.read = c.read;
    rep.repaired = c.repaired;
    rep.skipped_sets = c.skipped_sets;
    rep.rejected = c.rejected;
    rep.partitions = std::move(c.partitions);
    if (c.rejected > 0)
      log(st, "warn",
          "sync: " + std::to_string(c.rejected) +
              " sessions were not written (PostgreSQL refused them, or their data did not "
              "decrypt: " +
              std::to_string(c.undecryptable) +
              "); they are set aside in the rejected hash (GET /v1/admin/sync/rejected), "
              "the last: " +
              c.last_rejection);
  } catch (const sync_error& e) {
    rep.error = e.what();
    postgres_failed = e.postgres();
  } catch (const std::exception& e) {
    rep.error = e.what();
  }
  rep.duration_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::steady_clock::now() - started)
                        .count();
  auto now = st.clock->now_ms();
  auto was = st.circuit.current();
  if (rep.ok) {
    st.circuit.on_success();
    // Runs start every interval (not an interval after the last one finished), so a save waits
    // at most about one interval plus one run; a run longer than the interval is followed at once.
    st.next_run_ms = started_ms + st.opts->interval.count();
  } else {
    st.next_run_ms = retry_after_failure(st, now);
  }
  auto is = st.circuit.current();
  st.status->update([&](messages::sync_status::snapshot& s) {
    ++s.runs;
    s.last_duration_ms = rep.duration_ms;
    if (rep.ok) {
      s.last_success_ms = now;
      s.rows_written += rep.synced;
      s.repaired += rep.repaired;
      s.rejected_total += rep.rejected;
      s.last_partitions = rep.partitions;
      s.postgres_up = true;
      s.next_attempt_ms = 0;
    } else {
      ++s.failures;
      s.last_error = rep.error;
      s.next_attempt_ms = st.next_run_ms;
      if (postgres_failed)
        s.postgres_up = false;
    }
    s.circuit = model::to_string(is);
  });
  if (st.opts->on_run) // after the status, which it may read
    st.opts->on_run(rep);
  if (!rep.ok)
    log(st, "warn",
        "sync failed (" + std::to_string(st.circuit.failures()) + " in a row, next attempt in " +
            std::to_string(st.next_run_ms - now) + " ms): " + rep.error);
  else if (was != model::circuit_breaker::state::closed)
    log(st, "info", "sync recovered: " + std::to_string(rep.synced) + " rows written");
  if (is == model::circuit_breaker::state::open && was != is)
    log(st, "warn", "sync circuit open: waiting before the next attempt");
  return rep;
}

void refresh_backlog(self_ptr self) {
  auto& st = self->state;
  std::int64_t backlog = -1;
  std::int64_t rejected = -1;
  try {
    backlog = st.engine->backlog();
    rejected = st.engine->rejected();
  } catch (const std::exception&) {
  }
  st.status->update([&](messages::sync_status::snapshot& s) {
    s.backlog = backlog;
    s.rejected = rejected;
  });
}

/// Until PostgreSQL answered once (or after it failed), connect to it when the circuit allows,
/// so /readyz and /v1/status show it up before the first sync is due.
void probe_postgres(self_ptr self, std::int64_t now) {
  auto& st = self->state;
  if (st.status->get().postgres_up || !st.circuit.allow(now))
    return;
  try {
    st.engine->ping_postgres();
    st.status->update([](messages::sync_status::snapshot& s) { s.postgres_up = true; });
  } catch (const std::exception& e) {
    auto retry = retry_after_failure(st, now);
    st.status->update([&](messages::sync_status::snapshot& s) {
      s.last_error = e.what();
      s.next_attempt_ms = retry;
      s.circuit = model::to_string(st.circuit.current());
    });
  }
}

void on_tick(self_ptr self) {
  auto& st = self->state;
  refresh_backlog(self);
  auto now = st.clock->now_ms();
  probe_postgres(self, now);
  auto backlog = st.status->get().backlog;
  bool due = now >= st.next_run_ms || backlog > st.opts->max_dirty;
  bool ran = due && st.circuit.allow(now);
  if (ran) {
    run_once(self);
    refresh_backlog(self);
  }
  // The next tick comes when the next run is due if that is sooner than a tick; at once after a
  // successful run that overran the interval; never sooner than a tick when nothing ran.
  now = st.clock->now_ms();
  auto wait = st.opts->tick;
  if (st.next_run_ms > now)
    wait = std::min(wait, std::chrono::milliseconds(st.next_run_ms - now));
  else if (ran)
    wait = std::chrono::milliseconds(0);
  self->delayed_send(self, wait, messages::sync_tick_atom::value);
}

} // namespace

messages::sync_actor::behavior_type sync(self_ptr self, std::shared_ptr<sync_engine> engine,
                                         std::shared_ptr<sync_options> opts,
                                         std::shared_ptr<messages::sync_status> status,
                                         const model::clock* clock) {
  auto& st = self->state;
  st.engine = std::move(engine);
  st.opts = std::move(opts);
  st.status = std::move(status);
  st.clock = clock;
  st.circuit = model::circuit_breaker{st.opts->backoff, st.opts->circuit_threshold};
  st.next_run_ms = clock->now_ms() + st.opts->interval.count();
  self->send(self, messages::sync_tick_atom::value);
  return {
      [=](messages::sync_now_atom) -> sync_report {
        auto rep = run_once(self);
        refresh_backlog(self);
        return rep;
      },
      [=](messages::sync_tick_atom) { on_tick(self); },
  };
}

messages::sync_actor spawn_sync(caf::actor_system& sys, std::shared_ptr<sync_engine> engine,
                                std::shared_ptr<sync_options> opts,
                                std::shared_ptr<messages::sync_status> status,
                                const model::clock& clock) {
  return sys.spawn<caf::detached>(sync, std::move(engine), std::move(opts), std::move(status),
                                  &clock);
}

} // namespace sessiond::actors
