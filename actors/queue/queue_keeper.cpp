// queue_keeper: one chain of ticks (each at the earliest due time of whatever comes next) drives
// every queue's maintenance script, the counts, the memory reading and the recurring jobs.
#include "actors/queue/queue_keeper.hpp"

#include "model/queue.hpp"

#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include <algorithm>
#include <charconv>

namespace sessiond::actors {

using self_ptr = messages::queue_keeper_actor::stateful_pointer<queue_keeper_state>;
using handle_t = messages::queue_keeper_actor;

namespace {

constexpr std::int64_t names_every_ms = 5000;
constexpr std::int64_t memory_every_ms = 1000;
constexpr std::int64_t count_every_ms = 2000;
constexpr std::int64_t longest_sleep_ms = 1000;

void log(self_ptr self, const char* level, const std::string& line) {
  if (self->state.env->log)
    self->state.env->log(level, line);
}

handle_t handle_of(self_ptr self) {
  return caf::actor_cast<handle_t>(self);
}

std::int64_t now_ms(self_ptr self) {
  return self->state.env->clock->now_ms();
}

/// Starts keeping `q` (its gauges from now on).
keeper_queue& know(self_ptr self, const std::string& q) {
  auto& st = self->state;
  auto it = st.queues.find(q);
  if (it != st.queues.end())
    return it->second;
  const auto& settings = st.env->cfg->settings_for(q);
  keeper_queue kq;
  kq.policy = policy_of(settings);
  st.env->meters->of(q).max_wait.Set(static_cast<double>(settings.max_wait_s));
  return st.queues.emplace(q, kq).first->second;
}

/// Plans the next tick at `at_ms` unless one is planned at that time or sooner already (also one
/// due now whose message is on its way: the chain is only ever moved earlier, so it never
/// breaks). on_tick forces the plan that continues the chain.
void plan(self_ptr self, std::int64_t at_ms, bool force = false) {
  auto& st = self->state;
  auto now = now_ms(self);
  at_ms = std::clamp(at_ms, now, now + longest_sleep_ms);
  if (!force && st.planned_ms <= at_ms)
    return;
  st.planned_ms = at_ms;
  self->delayed_send(self, std::chrono::milliseconds(std::max<std::int64_t>(1, at_ms - now)),
                     messages::keeper_tick_atom::value, ++st.generation);
}

void start_tick(self_ptr self, const std::string& q, keeper_queue& kq, std::int64_t now) {
  kq.ticking = true;
  if (kq.hinted_ms <= now)
    kq.hinted_ms = INT64_MAX;
  auto h = handle_of(self);
  self->state.env->store->tick(0, q, kq.policy, now, [h, q](queue::tick_result&& r) {
    caf::anon_send(h, messages::tick_done{q, std::move(r)});
  });
}

void start_count(self_ptr self, const std::string& q, keeper_queue& kq) {
  kq.counting = true;
  auto h = handle_of(self);
  self->state.env->store->counts(0, q, [h, q](queue::queue_counts&& c) {
    caf::anon_send(h, messages::counts_done{q, std::move(c)});
  });
}

void start_schedule(self_ptr self, std::size_t i, std::int64_t period) {
  auto& s = self->state.schedules[i];
  s.sending = true;
  model::job_spec job;
  job.type = s.cfg.type;
  job.payload = s.cfg.payload;
  job.priority = s.cfg.priority;
  auto h = handle_of(self);
  auto policy = policy_of(self->state.env->cfg->settings_for(s.cfg.queue));
  self->state.env->store->enqueue(
      0, s.cfg.queue, {job}, policy, now_ms(self), queue::schedule_fence{s.cfg.name, period},
      [h, i, period](queue::enqueue_result&& r) {
        caf::anon_send(h, messages::schedule_done{i, period, std::move(r)});
      });
}

void start_side_work(self_ptr self, std::int64_t now) {
  auto& st = self->state;
  auto h = handle_of(self);
  if (!st.naming && now >= st.next_names_ms) {
    st.naming = true;
    st.env->store->queue_names(0,
                               [h](std::pair<queue::outcome_base, std::vector<std::string>>&& r) {
                                 caf::anon_send(h, messages::names_done{std::move(r.second)});
                               });
  }
  if (!st.reading_memory && now >= st.next_memory_ms) {
    st.reading_memory = true;
    st.env->store->redis().command(0, {"INFO", "memory"}, [h](redis::errc e, redis::reply&& r) {
      caf::anon_send(h,
                     messages::memory_done{e == redis::errc::ok && !r.is_error() ? std::move(r.str)
                                                                                 : std::string()});
    });
  }
}

/// Does what is due and plans the next tick at the earliest of what comes next.
void on_tick(self_ptr self) {
  auto& st = self->state;
  auto now = now_ms(self);
  start_side_work(self, now);
  std::int64_t next = now + longest_sleep_ms;
  for (auto& [q, kq] : st.queues) {
    if (!kq.ticking && kq.next_tick_ms <= now)
      start_tick(self, q, kq, now);
    if (!kq.counting && kq.next_count_ms <= now)
      start_count(self, q, kq);
    if (!kq.ticking)
      next = std::min(next, kq.next_tick_ms);
    if (!kq.counting)
      next = std::min(next, kq.next_count_ms);
  }
  for (std::size_t i = 0; i < st.schedules.size(); ++i) {
    auto& s = st.schedules[i];
    auto period = model::schedule_period(now, s.cfg.every_s, s.at_minute);
    if (!s.sending && period > s.done_period && now >= s.retry_at_ms)
      start_schedule(self, i, period);
    next = std::min(next, s.done_period >= period
                              ? model::schedule_next_ms(period, s.cfg.every_s, s.at_minute)
                              : std::max(now + 1, s.retry_at_ms));
  }
  next = std::min({next, st.next_names_ms, st.next_memory_ms});
  plan(self, std::max(next, now + 1), true);
}

void on_tick_done(self_ptr self, messages::tick_done& d) {
  auto& st = self->state;
  auto it = st.queues.find(d.queue);
  if (it == st.queues.end())
    return;
  auto& kq = it->second;
  kq.ticking = false;
  auto now = now_ms(self);
  auto interval = st.env->cfg->maintenance_interval_ms;
  kq.next_tick_ms = now + interval;
  const auto& r = d.result;
  if (!r.ok())
    return plan(self, kq.next_tick_ms);
  for (auto at : {r.next_due_ms, r.next_expiry_ms, kq.hinted_ms})
    if (at >= 0 && at != INT64_MAX)
      kq.next_tick_ms = std::min(kq.next_tick_ms, std::max(at, now + 1));
  auto& m = st.env->meters->of(d.queue);
  if (r.requeued + r.stalled_failed > 0) {
    m.stalled.Increment(static_cast<double>(r.requeued + r.stalled_failed));
    m.dead_lettered.Increment(static_cast<double>(r.stalled_failed));
    log(self, "warn",
        "queue " + d.queue + ": " + std::to_string(r.requeued + r.stalled_failed) +
            " leases expired without an answer (" + std::to_string(r.stalled_failed) +
            " of those jobs failed for good)");
  }
  if (r.promoted + r.requeued > 0) {
    st.env->waiters->notify(d.queue);
    if (st.env->wake)
      st.env->wake(d.queue);
  }
  plan(self, kq.next_tick_ms);
}

void on_counts_done(self_ptr self, messages::counts_done& d) {
  auto& st = self->state;
  auto it = st.queues.find(d.queue);
  if (it == st.queues.end())
    return;
  it->second.counting = false;
  auto now = now_ms(self);
  it->second.next_count_ms = now + count_every_ms;
  const auto& c = d.counts;
  if (c.ok()) {
    auto& m = st.env->meters->of(d.queue);
    m.waiting.Set(static_cast<double>(c.paused ? 0 : c.waiting));
    m.paused_jobs.Set(static_cast<double>(c.paused ? c.waiting : 0));
    m.delayed.Set(static_cast<double>(c.delayed));
    m.active.Set(static_cast<double>(c.active));
    m.completed_now.Set(static_cast<double>(c.completed));
    m.failed_now.Set(static_cast<double>(c.failed));
    m.paused.Set(c.paused ? 1 : 0);
    m.oldest_waiting.Set(
        c.oldest_ready_ms < 0
            ? 0.0
            : static_cast<double>(std::max<std::int64_t>(0, now - c.oldest_ready_ms)) / 1000.0);
    st.env->queues.update([&](auto& all) { all[d.queue] = queue_snapshot{c, now}; });
  }
  plan(self, it->second.next_count_ms);
}

void on_names_done(self_ptr self, messages::names_done& d) {
  auto& st = self->state;
  st.naming = false;
  st.next_names_ms = now_ms(self) + names_every_ms;
  for (const auto& q : d.names)
    know(self, q);
  plan(self, now_ms(self));
}

void on_memory_done(self_ptr self, messages::memory_done& d) {
  auto& st = self->state;
  st.reading_memory = false;
  st.next_memory_ms = now_ms(self) + memory_every_ms;
  if (d.info.empty())
    return;
  auto mem = parse_memory(d.info);
  st.env->memory.update([&](queue_memory& m) { m = mem; });
  bool unsafe = !mem.policy.empty() && mem.policy != "noeviction";
  st.env->meters->eviction_unsafe().Set(unsafe ? 1 : 0);
  st.env->meters->redis_memory_ratio().Set(
      mem.max > 0 ? static_cast<double>(mem.used) / static_cast<double>(mem.max) : 0.0);
  if (mem.policy != st.policy_seen) {
    if (unsafe)
      log(self, "error",
          "the queue's Redis has maxmemory-policy " + mem.policy +
              ": when it fills up it evicts keys, acknowledged jobs among them; set it to "
              "noeviction (queues.require_noeviction = true refuses to start otherwise)");
    else if (!st.policy_seen.empty())
      log(self, "info", "the queue's Redis has maxmemory-policy noeviction again");
    st.policy_seen = mem.policy;
  }
}

void on_schedule_done(self_ptr self, messages::schedule_done& d) {
  auto& st = self->state;
  if (d.index >= st.schedules.size())
    return;
  auto& s = st.schedules[d.index];
  s.sending = false;
  const auto& r = d.result;
  if (r.ok() || r.error == queue::errc::fenced) {
    s.done_period = std::max(s.done_period, d.period);
    if (r.ok() && !r.jobs.empty()) {
      st.env->meters->of(s.cfg.queue).enqueued.Increment();
      log(self, "info",
          "recurring job " + s.cfg.name + " enqueued as job " + r.jobs[0].id + " in queue " +
              s.cfg.queue);
      st.env->waiters->notify(s.cfg.queue);
      if (st.env->wake)
        st.env->wake(s.cfg.queue);
    }
  } else {
    s.retry_at_ms = now_ms(self) + 1000;
    log(self, "warn",
        "recurring job " + s.cfg.name + " could not be enqueued, retrying: " + r.detail);
  }
  plan(self, now_ms(self));
}

} // namespace

std::int64_t minute_of_day(const std::string& hh_mm) {
  if (hh_mm.size() != 5)
    return 0;
  return ((hh_mm[0] - '0') * 10 + (hh_mm[1] - '0')) * 60 + (hh_mm[3] - '0') * 10 + (hh_mm[4] - '0');
}

queue_memory parse_memory(const std::string& info) {
  queue_memory m;
  std::size_t pos = 0;
  while (pos < info.size()) {
    auto end = info.find('\n', pos);
    auto line = std::string_view(info).substr(pos, end == std::string::npos ? end : end - pos);
    pos = end == std::string::npos ? info.size() : end + 1;
    if (!line.empty() && line.back() == '\r')
      line.remove_suffix(1);
    auto colon = line.find(':');
    if (colon == std::string_view::npos)
      continue;
    auto key = line.substr(0, colon);
    auto value = line.substr(colon + 1);
    auto number = [&](std::uint64_t& out) {
      std::from_chars(value.data(), value.data() + value.size(), out);
    };
    if (key == "used_memory")
      number(m.used), m.known = true;
    else if (key == "maxmemory")
      number(m.max);
    else if (key == "maxmemory_policy")
      m.policy = std::string(value);
  }
  return m;
}

messages::queue_keeper_actor::behavior_type queue_keeper(self_ptr self,
                                                         std::shared_ptr<const queue_env> env) {
  auto& st = self->state;
  st.env = std::move(env);
  for (const auto& [q, settings] : st.env->cfg->named)
    know(self, q);
  for (const auto& s : st.env->cfg->schedule) {
    know(self, s.queue);
    keeper_schedule ks;
    ks.cfg = s;
    ks.at_minute = s.at.empty() ? 0 : minute_of_day(s.at);
    st.schedules.push_back(std::move(ks));
  }
  for (auto& [q, kq] : st.queues)
    st.env->store->register_queue(0, q, st.env->cfg->max_queues, [](queue::outcome_base&&) {});
  self->send(self, messages::keeper_tick_atom::value, st.generation);
  return {
      [=](messages::keeper_tick_atom, std::uint64_t gen) {
        if (gen == self->state.generation)
          on_tick(self);
      },
      [=](messages::tick_done& d) { on_tick_done(self, d); },
      [=](messages::counts_done& d) { on_counts_done(self, d); },
      [=](messages::names_done& d) { on_names_done(self, d); },
      [=](messages::memory_done& d) { on_memory_done(self, d); },
      [=](messages::due_hint& h) {
        auto& kq = know(self, h.queue);
        kq.next_tick_ms = std::min(kq.next_tick_ms, h.due_ms);
        kq.hinted_ms = std::min(kq.hinted_ms, h.due_ms);
        if (!kq.ticking)
          plan(self, h.due_ms);
      },
      [=](messages::schedule_done& d) { on_schedule_done(self, d); },
  };
}

} // namespace sessiond::actors
