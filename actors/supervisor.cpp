// supervisor: spawns and monitors every session actor; restarts crashed ones with backoff.
#include "actors/supervisor.hpp"

#include "actors/session_router.hpp"
#include "actors/session_shard.hpp"

#include <caf/actor_system.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/system_messages.hpp>
#include <caf/typed_event_based_actor.hpp>

#include <algorithm>

namespace sessiond::actors {

using self_ptr = messages::supervisor_actor::stateful_pointer<supervisor_state>;
using clock_type = std::chrono::steady_clock;

namespace {

void spawn_shard(self_ptr self, std::size_t i) {
  auto shard = self->spawn(session_shard, i, self->state.env);
  self->monitor(shard);
  self->state.shards[i] = shard;
  self->state.children[i].started = clock_type::now();
  if (self->state.router)
    self->send(self->state.router, messages::set_shard_atom::value, std::uint64_t{i}, shard);
  if (self->state.opts->on_shard)
    self->state.opts->on_shard(i, shard);
}

void spawn_router(self_ptr self) {
  auto router = self->spawn(session_router, self->state.shards, self->state.env);
  self->monitor(router);
  self->state.router = router;
  self->state.children.back().started = clock_type::now();
  if (self->state.opts->on_router)
    self->state.opts->on_router(router);
}

void spawn_extra(self_ptr self, std::size_t j) {
  auto& st = self->state;
  st.extra[j] = st.opts->extra[j].spawn(self->system());
  self->monitor(st.extra[j]);
  st.children[st.shards.size() + 1 + j].started = clock_type::now();
}

std::string child_name(const supervisor_state& st, std::size_t i) {
  if (i < st.shards.size())
    return "session_shard " + std::to_string(i);
  if (i == st.shards.size())
    return "session_router";
  return st.opts->extra[i - st.shards.size() - 1].name;
}

/// Index of the child that went down, or npos.
std::size_t find_child(self_ptr self, const caf::actor_addr& who) {
  auto& st = self->state;
  for (std::size_t i = 0; i < st.shards.size(); ++i)
    if (st.shards[i] && st.shards[i].address() == who)
      return i;
  if (st.router && st.router.address() == who)
    return st.shards.size();
  for (std::size_t j = 0; j < st.extra.size(); ++j)
    if (st.extra[j] && st.extra[j]->address() == who)
      return st.shards.size() + 1 + j;
  return static_cast<std::size_t>(-1);
}

bool too_many_restarts(self_ptr self) {
  auto& st = self->state;
  auto now = clock_type::now();
  st.restarts.push_back(now);
  auto cutoff = now - st.opts->window;
  st.restarts.erase(
      std::remove_if(st.restarts.begin(), st.restarts.end(), [&](auto t) { return t < cutoff; }),
      st.restarts.end());
  return static_cast<int>(st.restarts.size()) > st.opts->max_restarts;
}

void on_down(self_ptr self, const caf::down_msg& dm) {
  auto& st = self->state;
  auto i = find_child(self, dm.source);
  if (i == static_cast<std::size_t>(-1) || st.escalated)
    return;
  auto& child = st.children[i];
  auto ran =
      std::chrono::duration_cast<std::chrono::milliseconds>(clock_type::now() - child.started);
  child.backoff = next_backoff(child.backoff, ran, st.opts->backoff_min, st.opts->backoff_max);
  auto what = child_name(st, i);
  if (too_many_restarts(self)) {
    st.escalated = true;
    if (st.opts->on_escalate)
      st.opts->on_escalate("supervisor: " + what + " keeps crashing (" +
                           std::to_string(st.restarts.size()) + " restarts within the window)");
    return;
  }
  if (st.opts->log)
    st.opts->log("supervisor: " + what + " stopped (" + caf::to_string(dm.reason) +
                 "), restarting in " + std::to_string(child.backoff.count()) + " ms");
  self->delayed_send(self, child.backoff, messages::restart_atom::value, std::uint64_t{i});
}

} // namespace

std::chrono::milliseconds next_backoff(std::chrono::milliseconds previous,
                                       std::chrono::milliseconds ran_for,
                                       std::chrono::milliseconds min,
                                       std::chrono::milliseconds max) {
  if (previous.count() == 0 || ran_for > max)
    return min;
  return std::min(previous * 2, max);
}

messages::supervisor_actor::behavior_type
supervisor(self_ptr self, std::shared_ptr<const shard_env> env,
           std::shared_ptr<const supervisor_options> opts) {
  auto& st = self->state;
  st.env = std::move(env);
  st.opts = std::move(opts);
  st.shards.resize(st.opts->shards);
  st.children.resize(st.opts->shards + 1 + st.opts->extra.size());
  st.extra.resize(st.opts->extra.size());
  for (std::size_t i = 0; i < st.opts->shards; ++i)
    spawn_shard(self, i);
  spawn_router(self);
  for (std::size_t j = 0; j < st.extra.size(); ++j)
    spawn_extra(self, j);
  self->set_down_handler([=](caf::down_msg& dm) { on_down(self, dm); });
  // Shutdown: stop every child with the same reason, then ourselves.
  self->set_exit_handler([=](caf::exit_msg& em) {
    for (auto& shard : self->state.shards)
      if (shard)
        self->send_exit(shard, em.reason);
    if (self->state.router)
      self->send_exit(self->state.router, em.reason);
    for (auto& child : self->state.extra)
      if (child)
        self->send_exit(caf::actor_cast<caf::actor>(child), em.reason);
    self->quit(em.reason);
  });
  return {
      [=](messages::restart_atom, std::uint64_t i) {
        if (i < self->state.shards.size()) {
          self->state.env->counters.shard_restarts.fetch_add(1);
          spawn_shard(self, i);
        } else if (i == self->state.shards.size()) {
          self->state.env->counters.router_restarts.fetch_add(1);
          spawn_router(self);
        } else {
          spawn_extra(self, i - self->state.shards.size() - 1);
        }
      },
      [=](messages::get_router_atom) { return self->state.router; },
  };
}

} // namespace sessiond::actors
