// See cache_loader.hpp.
#include "actors/cache/cache_loader.hpp"

#include <caf/send.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <nlohmann/json.hpp>

#include <chrono>

namespace sessiond::actors {

namespace {

using self_ptr = messages::cache_loader_actor::stateful_pointer<cache_loader_state>;
using messages::cache_entry_ptr;

messages::cache_loader_actor handle_of(self_ptr self) {
  return caf::actor_cast<messages::cache_loader_actor>(self);
}

std::int64_t now_ms(self_ptr self) {
  return self->state.env->clock->now_ms();
}

messages::cache_result answer_of(const cache_entry_ptr& e, model::cache_outcome o) {
  messages::cache_result r;
  r.status = e->negative ? 404 : 200;
  r.entry = e;
  r.outcome = o;
  if (e->negative)
    r.detail = "the loader found no value for this key";
  return r;
}

void answer_all(cache_flight& f, const messages::cache_result& r) {
  for (auto& w : f.waiters)
    w->complete(messages::cache_result(r));
  f.waiters.clear();
}

void refuse(const messages::cache_completion_ptr& done, std::int64_t retry_after_s,
            std::string detail) {
  messages::cache_result r;
  r.status = 503;
  r.retry_after_s = retry_after_s;
  r.detail = std::move(detail);
  done->complete(std::move(r));
}

void run_load(self_ptr self, const std::string& key, cache_flight& f) {
  auto& st = self->state;
  f.loading = true;
  auto h = handle_of(self);
  auto sql = st.space->cfg.loader;
  auto name = st.space->statement;
  auto max_bytes = static_cast<std::size_t>(st.env->cfg->max_value_bytes);
  bool queued = st.env->pool->submit([h, key, sql, name, max_bytes](postgres::client* c) {
    auto start = std::chrono::steady_clock::now();
    messages::cache_loaded out;
    if (c == nullptr) {
      out.key = key;
      out.error = "PostgreSQL unreachable";
    } else {
      try {
        auto r = c->exec_prepared(name, sql, {key});
        if (r.rows.empty() || r.rows[0].empty())
          out = check_loaded(key, std::nullopt, false, max_bytes);
        else
          out = check_loaded(key, r.rows[0][0], true, max_bytes);
      } catch (const std::exception& e) {
        out.key = key;
        out.error = e.what();
      }
    }
    out.duration_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::steady_clock::now() - start)
                          .count();
    caf::anon_send(h, std::move(out));
  });
  if (!queued) {
    messages::cache_loaded out;
    out.key = key;
    out.error = "the PostgreSQL pool's queue is full";
    self->send(self, std::move(out));
  }
}

/// Another node holds the lock (or this one just got it): look in Redis.
void look(self_ptr self, const std::string& key) {
  auto h = handle_of(self);
  self->state.env->store->get(
      0, self->state.space->name, key, [h, key](bool ok, std::optional<model::cache_entry> e) {
        messages::cache_polled p;
        p.key = key;
        p.redis_ok = ok;
        if (e)
          p.entry = std::make_shared<const model::cache_entry>(std::move(*e));
        caf::anon_send(h, std::move(p));
      });
}

void start_flight(self_ptr self, const std::string& key) {
  auto& st = self->state;
  if (!st.env->redis_up || !st.env->redis_up()) {
    run_load(self, key, st.flights[key]);
    return;
  }
  auto h = handle_of(self);
  st.env->store->try_lock(0, st.space->name, key, st.token, st.env->cfg->lock_ms,
                          [h, key](bool ok, bool got) {
                            caf::anon_send(h, messages::cache_locked{key, ok, got});
                          });
}

void end_flight(self_ptr self, const std::string& key) {
  auto& st = self->state;
  auto it = st.flights.find(key);
  if (it == st.flights.end())
    return;
  if (it->second.locked)
    st.env->store->unlock(0, st.space->name, key, st.token);
  st.flights.erase(it);
}

void on_load(self_ptr self, messages::cache_load& l) {
  auto& st = self->state;
  auto& m = *st.space->meters;
  if (auto it = st.flights.find(l.key); it != st.flights.end()) {
    auto& f = it->second;
    if (!l.done)
      return; // an early refresh of a key already loading
    if (f.result)
      return l.done->complete(answer_of(f.result, model::cache_outcome::miss));
    if (static_cast<std::int64_t>(f.waiters.size()) >= st.env->cfg->max_waiters) {
      m.overload.Increment();
      return refuse(l.done, st.env->cfg->retry_after_s,
                    "cache.max_waiters readers already wait for this key's load; retry");
    }
    m.single_flight_waits.Increment();
    f.waiters.push_back(std::move(l.done));
    if (!f.stale && l.stale)
      f.stale = std::move(l.stale);
    return;
  }
  if (static_cast<std::int64_t>(st.flights.size()) >= st.env->cfg->max_loads) {
    if (l.done) {
      m.overload.Increment();
      refuse(l.done, st.env->cfg->retry_after_s,
             "cache.max_loads loads are running or queued on this node; retry");
    }
    return;
  }
  auto& f = st.flights[l.key];
  f.stale = std::move(l.stale);
  if (l.done)
    f.waiters.push_back(std::move(l.done));
  else
    m.early_refreshes.Increment();
  start_flight(self, l.key);
}

void on_locked(self_ptr self, const messages::cache_locked& r) {
  auto& st = self->state;
  auto it = st.flights.find(r.key);
  if (it == st.flights.end())
    return;
  auto& f = it->second;
  if (!r.redis_ok)
    return run_load(self, r.key, f);
  f.locked = r.got;
  f.lock_deadline_ms = now_ms(self) + st.env->cfg->lock_ms;
  if (f.waiters.empty()) { // an early refresh: another node holds the lock, or this one loads
    if (!r.got)
      return end_flight(self, r.key);
    return run_load(self, r.key, f);
  }
  look(self, r.key); // with the lock too: the value may have landed just before we took it
}

void on_polled(self_ptr self, messages::cache_polled& p) {
  auto& st = self->state;
  auto it = st.flights.find(p.key);
  if (it == st.flights.end())
    return;
  auto& f = it->second;
  auto now = now_ms(self);
  if (p.entry && p.entry->fresh_until_ms > now) {
    st.space->near->put(p.key, p.entry, now);
    answer_all(f, answer_of(p.entry, model::cache_outcome::miss));
    return end_flight(self, p.key);
  }
  if (!f.stale && p.entry && !p.entry->negative)
    f.stale = p.entry;
  if (f.locked || !p.redis_ok || now >= f.lock_deadline_ms)
    return run_load(self, p.key, f);
  self->delayed_send(self, std::chrono::milliseconds(st.env->cfg->lock_poll_ms),
                     messages::cache_poll_atom::value, p.key);
}

void on_loaded(self_ptr self, messages::cache_loaded& l) {
  auto& st = self->state;
  auto& m = *st.space->meters;
  m.loads.Increment();
  m.load_duration.Observe(static_cast<double>(l.duration_ms) / 1000.0);
  auto it = st.flights.find(l.key);
  if (it == st.flights.end())
    return;
  auto& f = it->second;
  f.loading = false;
  auto now = now_ms(self);
  if (!l.ok) {
    m.load_errors.Increment();
    if (st.env->log && now - st.last_log_ms >= 10000) { // a failing database fails every load
      st.env->log("warn", "cache " + st.space->name + ": loader failed: " + l.error +
                              (st.unlogged > 0 ? " (and " + std::to_string(st.unlogged) +
                                                     " more failures since the last line)"
                                               : std::string()));
      st.last_log_ms = now;
      st.unlogged = 0;
    } else {
      ++st.unlogged;
    }
    auto stale_limit =
        f.stale ? f.stale->fresh_until_ms + st.space->cfg.stale_if_error_s * 1000 : 0;
    if (f.stale && now < stale_limit) {
      m.stale_served.Increment(static_cast<double>(f.waiters.size()));
      answer_all(f, answer_of(f.stale, model::cache_outcome::stale));
    } else {
      messages::cache_result r;
      r.status = 503;
      r.retry_after_s = st.env->cfg->retry_after_s;
      r.detail = "the loader failed and no value within stale_if_error_s is cached: " + l.error;
      answer_all(f, r);
    }
    return end_flight(self, l.key);
  }
  bool negative = !l.found;
  auto e = std::make_shared<const model::cache_entry>(
      make_entry(*st.space, negative, std::move(l.value), now, l.duration_ms));
  if (negative && st.space->cfg.negative_ttl_s == 0) {
    answer_all(f, answer_of(e, model::cache_outcome::miss));
    return end_flight(self, l.key);
  }
  // The waiters are answered once Redis has the value (cache_stored), so a reader's next
  // request finds it there; readers that come meanwhile get it from the flight.
  f.result = e;
  auto h = handle_of(self);
  store_loaded(*st.env, *st.space, l.key, e,
               [h, key = l.key] { caf::anon_send(h, messages::cache_stored{key}); });
}

} // namespace

messages::cache_loaded check_loaded(const std::string& key, const std::optional<std::string>& row,
                                    bool has_row, std::size_t max_value_bytes) {
  messages::cache_loaded out;
  out.key = key;
  out.ok = true;
  if (!has_row || !row)
    return out; // no row, or a NULL value: nothing to cache but the fact
  auto j = nlohmann::json::parse(*row, nullptr, false);
  if (j.is_discarded()) {
    out.ok = false;
    out.error = "the loader's first column is not JSON";
    return out;
  }
  out.value = j.dump();
  if (out.value.size() > max_value_bytes) {
    out.ok = false;
    out.error = "the loaded value has " + std::to_string(out.value.size()) +
                " bytes, over cache.max_value_bytes " + std::to_string(max_value_bytes);
    out.value.clear();
    return out;
  }
  out.found = true;
  return out;
}

messages::cache_loader_actor::behavior_type
cache_loader(messages::cache_loader_actor::stateful_pointer<cache_loader_state> self,
             std::string ns, std::shared_ptr<const cache_env> env) {
  auto& st = self->state;
  st.env = std::move(env);
  st.space = st.env->space(ns);
  st.token =
      st.env->node_id + ":" + std::to_string(static_cast<std::uint64_t>(unit_random() * 1e15));
  return {
      [=](messages::cache_load& l) { on_load(self, l); },
      [=](messages::cache_locked& r) { on_locked(self, r); },
      [=](messages::cache_polled& p) { on_polled(self, p); },
      [=](messages::cache_loaded& l) { on_loaded(self, l); },
      [=](messages::cache_stored& s) {
        auto it = self->state.flights.find(s.key);
        if (it != self->state.flights.end() && it->second.result)
          answer_all(it->second, answer_of(it->second.result, model::cache_outcome::miss));
        end_flight(self, s.key);
      },
      [=](messages::cache_poll_atom, const std::string& key) { look(self, key); },
  };
}

} // namespace sessiond::actors
