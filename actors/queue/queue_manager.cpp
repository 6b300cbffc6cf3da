// queue_manager: leases for free slots, hands jobs to workers, reports outcomes in batches,
// extends running leases, keeps a circuit per job type, and drains on shutdown.
#include "actors/queue/queue_manager.hpp"

#include "actors/queue/queue_worker.hpp"

#include <caf/actor_system.hpp>
#include <caf/exit_reason.hpp>
#include <caf/send.hpp>
#include <caf/spawn_options.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/system_messages.hpp>
#include <caf/typed_event_based_actor.hpp>

#include <algorithm>

namespace sessiond::actors {

using messages::job_done;
using self_ptr = messages::queue_manager_actor::stateful_pointer<queue_manager_state>;

namespace {

constexpr std::int64_t max_lease_batch = 1000;
constexpr std::size_t max_report_batch = 1000;
constexpr auto park_for = std::chrono::seconds(5);

void log(self_ptr self, const char* level, const std::string& line) {
  if (self->state.env->log)
    self->state.env->log(level, "queue " + self->state.queue + ": " + line);
}

std::chrono::milliseconds redis_backoff(std::int64_t failures) {
  auto ms = std::min<std::int64_t>(5000, 100LL << std::min<std::int64_t>(failures, 6));
  return std::chrono::milliseconds(ms);
}

void publish_pool(self_ptr self) {
  auto& st = self->state;
  pool_snapshot p;
  p.concurrency = st.concurrency;
  p.busy = st.busy;
  for (auto& [type, c] : st.circuits)
    p.circuits[type] = model::to_string(c.current());
  st.env->pools.update([&](auto& m) { m[st.queue] = std::move(p); });
  st.env->meters->of(st.queue).busy.Set(static_cast<double>(st.busy));
}

messages::queue_worker_actor spawn_worker(self_ptr self) {
  auto w = self->spawn<caf::linked>(queue_worker, self->state.env,
                                    caf::actor_cast<messages::queue_manager_actor>(self));
  self->state.workers.push_back(w);
  self->state.idle.push_back(w);
  return w;
}

std::int64_t running_of_type(const queue_manager_state& st, const std::string& type) {
  return std::count_if(st.running.begin(), st.running.end(), [&](const auto& kv) {
    return !kv.second.reported && kv.second.job.type == type;
  });
}

void park(self_ptr self) {
  auto& st = self->state;
  if (st.parked || st.draining)
    return;
  st.parked = true;
  auto handle = caf::actor_cast<messages::queue_manager_actor>(self);
  auto until = std::chrono::steady_clock::now() + park_for;
  bool ok = st.env->waiters->park(
      st.queue, until,
      [handle](std::function<void(bool)> answered) {
        caf::anon_send(handle, messages::queue_wake_atom::value);
        answered(true);
      },
      [handle] { caf::anon_send(handle, messages::queue_wake_atom::value); });
  if (!ok) { // no room among the parked requests (or stopping): look again later
    st.parked = false;
    self->delayed_send(self, std::chrono::milliseconds(st.env->cfg->lease_poll_ms),
                       messages::queue_lease_atom::value);
  }
}

void send_lease(self_ptr self, std::int64_t max, std::vector<std::string> types, std::string tag) {
  auto& st = self->state;
  ++st.leasing;
  auto handle = caf::actor_cast<messages::queue_manager_actor>(self);
  st.env->store->lease(0, st.queue, max, st.policy.lease_ms, types, queue::token_prefix(),
                       st.env->clock->now_ms(),
                       [handle, tag = std::move(tag)](queue::lease_result&& r) {
                         caf::anon_send(handle, messages::leased_msg{tag, std::move(r)});
                       });
}

/// Leases for the free slots: the closed types in one call, one probe per half-open type.
void try_lease(self_ptr self) {
  auto& st = self->state;
  if (st.draining || st.starved || st.leasing > 0)
    return;
  // A slot frees when its job is done, before its report reached Redis, so leases and reports
  // overlap; outcomes not yet in Redis are bounded too (concurrency more at most).
  auto free = std::min(st.concurrency - st.busy,
                       2 * st.concurrency - static_cast<std::int64_t>(st.running.size()));
  if (free <= 0)
    return;
  auto now = st.env->clock->now_ms();
  std::vector<std::string> closed;
  std::int64_t reopen = -1;
  for (auto& [type, c] : st.circuits) {
    auto allowed = c.allowance(now, running_of_type(st, type));
    if (allowed < 0)
      closed.push_back(type);
    else if (allowed > 0 && free > 0) {
      send_lease(self, 1, {type}, type);
      --free;
    } else if (c.current() == model::type_circuit::state::open)
      reopen = reopen < 0 ? c.reopen_at_ms() : std::min(reopen, c.reopen_at_ms());
  }
  if (!closed.empty() && free > 0)
    send_lease(self, std::min(free, max_lease_batch), std::move(closed), "");
  if (st.leasing == 0 && reopen >= 0) // every type's circuit is open: look when one may probe
    self->delayed_send(self, std::chrono::milliseconds(std::max<std::int64_t>(1, reopen - now)),
                       messages::queue_lease_atom::value);
}

void arm_extend(self_ptr self) {
  auto& st = self->state;
  if (st.extend_armed || st.running.empty())
    return;
  st.extend_armed = true;
  auto every = std::max<std::int64_t>(300, st.policy.lease_ms / 3);
  self->delayed_send(self, std::chrono::milliseconds(every), messages::queue_extend_atom::value);
}

void flush(self_ptr self);

void check_drained(self_ptr self) {
  auto& st = self->state;
  if (!st.draining || st.drains.empty() || st.flushing || !st.pending.empty())
    return;
  if (st.busy > 0)
    return;
  for (auto& p : st.drains)
    p.deliver(std::int64_t{0});
  st.drains.clear();
}

void on_leased(self_ptr self, messages::leased_msg& m) {
  auto& st = self->state;
  --st.leasing;
  auto& r = m.result;
  if (!r.ok()) {
    ++st.redis_failures;
    if (st.redis_failures == 1)
      log(self, "warn", "lease failed, retrying with backoff: " + r.detail);
    self->delayed_send(self, redis_backoff(st.redis_failures), messages::queue_lease_atom::value);
    return;
  }
  st.redis_failures = 0;
  auto now = st.env->clock->now_ms();
  auto& meters = st.env->meters->of(st.queue);
  for (auto& job : r.jobs) {
    if (st.idle.empty()) // cannot happen (leases ask for free slots only); never drop a lease
      spawn_worker(self);
    auto w = st.idle.back();
    st.idle.pop_back();
    auto it = st.handlers.find(job.type);
    messages::job_handler h = it != st.handlers.end() ? it->second : messages::job_handler{};
    meters.wait.Observe(static_cast<double>(std::max<std::int64_t>(0, now - job.ready_ms)) /
                        1000.0);
    auto lease_ms = std::max<std::int64_t>(1000, job.expires_ms - now);
    st.running[job.id] = running_job{job, w, lease_ms, false};
    ++st.busy;
    self->send(w, messages::run_job{st.queue, job, h});
  }
  meters.leased.Increment(static_cast<double>(r.jobs.size()));
  if (m.types_key.empty() && (r.paused || r.jobs.empty()))
    st.starved = true;
  publish_pool(self);
  arm_extend(self);
  if (st.starved)
    park(self);
  else
    try_lease(self);
}

void on_circuit(self_ptr self, const std::string& type, bool failed) {
  auto& st = self->state;
  auto it = st.circuits.find(type);
  if (it == st.circuits.end())
    return;
  auto before = it->second.current();
  if (failed)
    it->second.on_failure(st.env->clock->now_ms());
  else
    it->second.on_success();
  auto after = it->second.current();
  if (before == after)
    return;
  st.env->meters->circuit(st.queue, type).Set(after == model::type_circuit::state::closed ? 0 : 1);
  if (after == model::type_circuit::state::open)
    log(self, "warn",
        "circuit of job type " + type +
            " open: its handler keeps failing; leasing of the type "
            "stops for " +
            std::to_string(st.env->cfg->settings_for(st.queue).circuit_cooldown_ms) +
            " ms, then one probe");
  else if (after == model::type_circuit::state::closed)
    log(self, "info", "circuit of job type " + type + " closed: its handler works again");
}

void on_job_done(self_ptr self, job_done& d) {
  auto& st = self->state;
  auto it = st.running.find(d.id);
  if (it == st.running.end() || it->second.job.token != d.token || it->second.reported)
    return; // given back at shutdown meanwhile
  it->second.reported = true;
  --st.busy;
  st.idle.push_back(it->second.worker);
  on_circuit(self, it->second.job.type, d.downstream_failed);
  st.pending.push_back({d.id, d.token, d.kind, std::move(d.value), queue::unit_random()});
  flush(self);
  try_lease(self);
}

void flush(self_ptr self) {
  auto& st = self->state;
  if (st.flushing || st.pending.empty())
    return;
  std::vector<queue::finish_entry> batch;
  if (st.pending.size() <= max_report_batch) {
    batch.swap(st.pending);
  } else {
    batch.assign(std::make_move_iterator(st.pending.begin()),
                 std::make_move_iterator(st.pending.begin() + max_report_batch));
    st.pending.erase(st.pending.begin(), st.pending.begin() + max_report_batch);
  }
  st.flushing = true;
  auto handle = caf::actor_cast<messages::queue_manager_actor>(self);
  auto entries = std::make_shared<std::vector<queue::finish_entry>>(std::move(batch));
  st.env->store->finish(
      0, st.queue, *entries, st.policy, st.env->clock->now_ms(),
      [handle, entries](queue::finish_result&& r) {
        caf::anon_send(handle, messages::finished_msg{std::move(*entries), std::move(r)});
      });
}

void on_finished(self_ptr self, messages::finished_msg& m) {
  auto& st = self->state;
  st.flushing = false;
  if (!m.result.ok()) {
    ++st.redis_failures;
    if (st.redis_failures == 1)
      log(self, "warn", "reporting job outcomes failed, retrying: " + m.result.detail);
    st.pending.insert(st.pending.begin(), std::make_move_iterator(m.entries.begin()),
                      std::make_move_iterator(m.entries.end()));
    self->delayed_send(self, redis_backoff(st.redis_failures), messages::queue_flush_atom::value);
    return;
  }
  st.redis_failures = 0;
  auto now = st.env->clock->now_ms();
  auto& meters = st.env->meters->of(st.queue);
  for (std::size_t i = 0; i < m.entries.size(); ++i) {
    st.running.erase(m.entries[i].id);
    if (i < m.result.jobs.size())
      queue::record_finish(meters, m.result.jobs[i], now);
  }
  publish_pool(self);
  flush(self);
  try_lease(self);
  check_drained(self);
}

void on_extend_tick(self_ptr self) {
  auto& st = self->state;
  st.extend_armed = false;
  auto now = st.env->clock->now_ms();
  std::vector<queue::extend_entry> entries;
  std::vector<std::string> ids;
  for (auto& [id, r] : st.running)
    if (!r.reported && r.job.expires_ms - now < r.lease_ms * 2 / 3) {
      entries.push_back({id, r.job.token, r.lease_ms});
      ids.push_back(id);
    }
  if (!entries.empty()) {
    auto handle = caf::actor_cast<messages::queue_manager_actor>(self);
    st.env->store->extend(
        0, st.queue, entries, now,
        [handle, ids = std::move(ids)](queue::extend_result&& r) mutable {
          caf::anon_send(handle, messages::extended_msg{std::move(ids), std::move(r)});
        });
  }
  arm_extend(self);
}

void on_extended(self_ptr self, messages::extended_msg& m) {
  auto& st = self->state;
  if (!m.result.ok())
    return; // tried again at the next tick, while the leases last
  for (std::size_t i = 0; i < m.ids.size() && i < m.result.expires_ms.size(); ++i) {
    auto it = st.running.find(m.ids[i]);
    if (it == st.running.end())
      continue;
    if (m.result.expires_ms[i] < 0)
      log(self, "warn",
          "job " + m.ids[i] +
              " lost its lease while running (it ran longer than "
              "its lease and could not be extended); it will run again elsewhere");
    else
      it->second.job.expires_ms = m.result.expires_ms[i];
  }
}

/// The drain's grace is over: jobs still running are given back, their attempt not counted.
void on_drain_deadline(self_ptr self) {
  auto& st = self->state;
  std::vector<std::pair<std::string, std::string>> held;
  for (auto& [id, r] : st.running)
    if (!r.reported)
      held.emplace_back(id, r.job.token);
  if (held.empty())
    return check_drained(self);
  for (auto& [id, token] : held)
    st.running.erase(id);
  st.busy = 0;
  auto handle = caf::actor_cast<messages::queue_manager_actor>(self);
  st.env->store->release(0, st.queue, held, st.env->clock->now_ms(),
                         [handle](std::pair<queue::outcome_base, std::int64_t>&& r) {
                           caf::anon_send(handle, messages::released_msg{r.second, r.first.detail});
                         });
}

void on_released(self_ptr self, messages::released_msg& m) {
  auto& st = self->state;
  if (!m.error.empty())
    log(self, "warn", "giving leases back failed (they expire and run again): " + m.error);
  else if (m.released > 0)
    log(self, "info", std::to_string(m.released) + " running jobs given back to the queue");
  for (auto& p : st.drains)
    p.deliver(m.released);
  st.drains.clear();
}

void on_worker_exit(self_ptr self, const caf::exit_msg& em) {
  auto& st = self->state;
  auto w = std::find_if(st.workers.begin(), st.workers.end(),
                        [&](const auto& a) { return a.address() == em.source; });
  if (w == st.workers.end()) { // our supervisor stops us
    for (auto& worker : st.workers)
      self->send_exit(worker, em.reason);
    return self->quit(em.reason);
  }
  auto dead = *w;
  st.workers.erase(w);
  st.idle.erase(std::remove(st.idle.begin(), st.idle.end(), dead), st.idle.end());
  spawn_worker(self);
  for (auto& [id, r] : st.running)
    if (r.worker == dead && !r.reported) {
      log(self, "warn",
          "worker stopped while running job " + id + " (" + caf::to_string(em.reason) +
              "); the attempt fails and is retried");
      r.reported = true;
      --st.busy;
      st.pending.push_back({id, r.job.token, 'f',
                            "queue worker stopped: " + caf::to_string(em.reason),
                            queue::unit_random()});
      flush(self);
      break;
    }
}

} // namespace

std::map<std::string, messages::job_handler> built_in_handlers(const config::queue_settings& s) {
  std::map<std::string, messages::job_handler> out;
  for (const auto& [type, h] : s.handlers) {
    if (h.kind == "noop")
      out[type] = {messages::job_handler::kind::noop, "", h.timeout_ms};
    else if (h.kind == "webhook")
      out[type] = {messages::job_handler::kind::webhook, h.url, h.timeout_ms};
  }
  return out;
}

messages::queue_manager_actor::behavior_type queue_manager(self_ptr self, std::string queue,
                                                           std::shared_ptr<const queue_env> env) {
  auto& st = self->state;
  st.queue = std::move(queue);
  st.env = std::move(env);
  const auto& settings = st.env->cfg->settings_for(st.queue);
  st.policy = policy_of(settings);
  st.concurrency = settings.concurrency;
  st.handlers = built_in_handlers(settings);
  for (const auto& [type, h] : st.handlers) {
    st.circuits.emplace(
        type, model::type_circuit{settings.circuit_failures, settings.circuit_cooldown_ms});
    st.env->meters->circuit(st.queue, type).Set(0);
  }
  for (std::int64_t i = 0; i < st.concurrency; ++i)
    spawn_worker(self);
  self->set_exit_handler([=](caf::exit_msg& em) { on_worker_exit(self, em); });
  publish_pool(self);
  self->send(self, messages::queue_lease_atom::value);
  return {
      [=](messages::queue_wake_atom) {
        self->state.parked = false;
        self->state.starved = false;
        try_lease(self);
      },
      [=](messages::queue_lease_atom) { try_lease(self); },
      [=](messages::leased_msg& m) { on_leased(self, m); },
      [=](job_done& d) { on_job_done(self, d); },
      [=](messages::queue_flush_atom) { flush(self); },
      [=](messages::finished_msg& m) { on_finished(self, m); },
      [=](messages::queue_extend_atom) { on_extend_tick(self); },
      [=](messages::extended_msg& m) { on_extended(self, m); },
      [=](messages::released_msg& m) { on_released(self, m); },
      [=](messages::queue_drain_atom) -> caf::typed_response_promise<std::int64_t> {
        auto& s = self->state;
        auto p = self->make_response_promise<std::int64_t>();
        s.draining = true;
        s.drains.push_back(p);
        auto grace = std::chrono::milliseconds(s.env->cfg->shutdown_grace_ms);
        self->delayed_send(self, grace, messages::queue_drained_atom::value);
        check_drained(self);
        return p;
      },
      [=](messages::queue_drained_atom) { on_drain_deadline(self); },
  };
}

} // namespace sessiond::actors
