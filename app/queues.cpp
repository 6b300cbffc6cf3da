// The job queue capability (see queues.hpp): wiring, start-up check, status and drain.
#include "app/queues.hpp"

#include "actors/queue/queue_env.hpp"
#include "actors/queue/queue_keeper.hpp"
#include "actors/queue/queue_manager.hpp"
#include "adapters/redis/blocking.hpp"
#include "api/queue_json.hpp"
#include "app/adapter_options.hpp"
#include "app/log.hpp"

#include <caf/actor_system.hpp>
#include <caf/after.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>
#include <caf/typed_event_based_actor.hpp>

#include <deque>
#include <mutex>
#include <stdexcept>
#include <thread>

namespace sessiond::app {

namespace {

using json = nlohmann::json;

model::queue_limits limits_of(const config::queues_section& q) {
  model::queue_limits l;
  l.max_payload_bytes = static_cast<std::size_t>(q.max_payload_bytes);
  return l;
}

/// A queue's settings for GET /v1/queues/{q}; webhook URLs are left out (they may hold secrets).
json settings_json(const config::queue_settings& s) {
  json handlers = json::object();
  for (const auto& [type, h] : s.handlers)
    handlers[type] = {{"kind", h.kind}, {"timeout_ms", h.timeout_ms}};
  return {{"max_length", s.max_length},
          {"lease_ms", s.lease_ms},
          {"max_attempts", s.max_attempts},
          {"backoff_ms", s.backoff_ms},
          {"max_backoff_ms", s.max_backoff_ms},
          {"max_stalled", s.max_stalled},
          {"keep_completed", s.keep_completed},
          {"keep_failed", s.keep_failed},
          {"keep_age_s", s.keep_age_s},
          {"max_wait_s", s.max_wait_s},
          {"concurrency", s.concurrency},
          {"circuit_failures", s.circuit_failures},
          {"circuit_cooldown_ms", s.circuit_cooldown_ms},
          {"handlers", handlers}};
}

/// One second's reading of a queue's counters, for the rates.
struct counter_sample {
  std::chrono::steady_clock::time_point at;
  double enqueued = 0, completed = 0, failed = 0;
};

} // namespace

struct queue_service::impl {
  const config::config& cfg;
  const model::clock& clock;
  std::vector<boost::asio::io_context*> loops;
  std::unique_ptr<redis::client> own_redis;
  redis::client* redis = nullptr;
  std::unique_ptr<queue::store> store;
  std::unique_ptr<queue::lease_waiters> waiters;
  std::unique_ptr<queue::queue_metrics> meters;
  std::unique_ptr<http::client> webhooks;
  std::shared_ptr<actors::queue_env> env;
  std::shared_ptr<api::queue_routes> routes;
  mutable std::mutex mtx; ///< guards the handles and the samples
  std::map<std::string, messages::queue_manager_actor> managers;
  messages::queue_keeper_actor keeper;
  std::map<std::string, std::deque<counter_sample>> samples;

  impl(const queue_deps& d) : cfg(*d.cfg), clock(*d.clock), loops(d.loops) {
    const auto& qc = cfg.queues;
    if (!cfg.redis.queue_url.empty()) {
      own_redis = std::make_unique<redis::client>(
          loops, redis_options(cfg, cfg.redis.queue_url, "redis.queue_url"));
      redis = own_redis.get();
    } else {
      redis = d.redis;
    }
    store = std::make_unique<queue::store>(*redis, cfg.redis.key_prefix);
    store->seal_with(d.keys);
    waiters = std::make_unique<queue::lease_waiters>(*loops.front(), *store,
                                                     static_cast<std::size_t>(qc.max_waiters),
                                                     std::chrono::milliseconds(qc.lease_poll_ms));
    meters = std::make_unique<queue::queue_metrics>(*d.registry);
    http::client_options ho;
    ho.tls_ca_file = ""; // webhooks are verified against the system's CA store
    ho.max_response_bytes = static_cast<std::size_t>(qc.max_payload_bytes) + 4096;
    webhooks = std::make_unique<http::client>(*loops.front(), ho);
    make_env();
    make_routes();
  }

  void make_env() {
    env = std::make_shared<actors::queue_env>();
    env->store = store.get();
    env->waiters = waiters.get();
    env->meters = meters.get();
    env->webhooks = webhooks.get();
    env->clock = &clock;
    env->cfg = &cfg.queues;
    env->node_id = cfg.node.id;
    env->log = log_at;
    env->wake = [this](const std::string& q) { wake(q); };
  }

  void make_routes() {
    api::queue_api_env e;
    e.store = store.get();
    e.waiters = waiters.get();
    e.meters = meters.get();
    e.clock = &clock;
    e.limits = limits_of(cfg.queues);
    e.max_queues = cfg.queues.max_queues;
    e.max_in_flight = cfg.queues.max_in_flight;
    e.retry_after_s = cfg.queues.retry_after_s;
    e.policy = [q = &cfg.queues](const std::string& name) {
      return actors::policy_of(q->settings_for(name));
    };
    e.settings_json = [q = &cfg.queues](const std::string& name) {
      return settings_json(q->settings_for(name));
    };
    e.memory_refusal = [this] { return memory_refusal(); };
    e.on_enqueued = [this](const std::string& q, std::int64_t due_ms) {
      wake(q);
      if (due_ms > 0) {
        std::lock_guard<std::mutex> guard{mtx};
        if (keeper)
          caf::anon_send(keeper, messages::due_hint{q, due_ms});
      }
    };
    e.on_resumed = [this](const std::string& q) { wake(q); };
    e.on_registered = [this](const std::string& q) {
      std::lock_guard<std::mutex> guard{mtx};
      if (keeper)
        caf::anon_send(keeper, messages::due_hint{q, clock.now_ms()});
    };
    routes = std::make_shared<api::queue_routes>(std::move(e));
  }

  void wake(const std::string& q) {
    std::lock_guard<std::mutex> guard{mtx};
    auto it = managers.find(q);
    if (it != managers.end())
      caf::anon_send(it->second, messages::queue_wake_atom::value);
  }

  /// Enqueues stop past queues.max_redis_memory_ratio of maxmemory: Redis would refuse writes
  /// soon, and a queue that filled it would take the sessions down with it.
  std::string memory_refusal() const {
    auto m = env->memory.get();
    if (!m.known || m.max == 0)
      return {};
    double ratio = static_cast<double>(m.used) / static_cast<double>(m.max);
    if (ratio <= cfg.queues.max_redis_memory_ratio)
      return {};
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.3f", ratio);
    return "the queue's Redis uses " + std::string(buf) +
           " of its maxmemory, above queues.max_redis_memory_ratio; nothing was enqueued";
  }

  void check_redis() {
    auto r = redis::command_wait(*redis, 0, {"INFO", "memory"},
                                 std::chrono::milliseconds(cfg.redis.command_timeout_ms));
    if (r.error != redis::errc::ok || r.value.is_error()) {
      log_warn("queues: the queue's Redis did not answer INFO at start (" +
               (r.error != redis::errc::ok ? std::string(redis::to_string(r.error)) : r.value.str) +
               "); its maxmemory-policy is checked once it does");
      return;
    }
    auto m = actors::parse_memory(r.value.str);
    env->memory.update([&](actors::queue_memory& mem) { mem = m; });
    if (m.policy.empty() || m.policy == "noeviction")
      return;
    meters->eviction_unsafe().Set(1);
    auto line = "queues: the queue's Redis has maxmemory-policy " + m.policy +
                ": once full it evicts keys, acknowledged jobs among them; set it to noeviction";
    if (cfg.queues.require_noeviction)
      throw std::runtime_error(line + " (queues.require_noeviction = true)");
    log_error(line + " (or set queues.require_noeviction = true to refuse to start)");
  }

  std::vector<actors::supervisor_options::extra_child> children() {
    std::vector<actors::supervisor_options::extra_child> out;
    out.push_back({"queue_keeper", [this](caf::actor_system& sys) {
                     auto k = sys.spawn(actors::queue_keeper,
                                        std::shared_ptr<const actors::queue_env>(env));
                     std::lock_guard<std::mutex> guard{mtx};
                     keeper = k;
                     return caf::actor_cast<caf::strong_actor_ptr>(k);
                   }});
    for (const auto& [name, settings] : cfg.queues.named) {
      if (settings.concurrency <= 0 || actors::built_in_handlers(settings).empty())
        continue;
      out.push_back({"queue_manager " + name, [this, q = name](caf::actor_system& sys) {
                       auto m = sys.spawn(actors::queue_manager, q,
                                          std::shared_ptr<const actors::queue_env>(env));
                       std::lock_guard<std::mutex> guard{mtx};
                       managers[q] = m;
                       return caf::actor_cast<caf::strong_actor_ptr>(m);
                     }});
    }
    return out;
  }

  void sample() {
    meters->waiters().Set(static_cast<double>(waiters->parked()));
    meters->redis_up().Set(redis->connected() ? 1 : 0);
    auto snapshots = env->queues.get();
    auto now = std::chrono::steady_clock::now();
    std::lock_guard<std::mutex> guard{mtx};
    for (const auto& [q, snap] : snapshots) {
      auto& m = meters->of(q);
      auto& d = samples[q];
      d.push_back({now, m.enqueued.Value(), m.completed.Value(), m.failed.Value()});
      while (d.size() > 11)
        d.pop_front();
    }
  }

  json rates(const std::string& q) const {
    auto it = samples.find(q);
    if (it == samples.end() || it->second.size() < 2)
      return {{"enqueued_per_s", nullptr}, {"completed_per_s", nullptr}, {"failed_per_s", nullptr}};
    const auto& a = it->second.front();
    const auto& b = it->second.back();
    double s = std::chrono::duration<double>(b.at - a.at).count();
    return {{"enqueued_per_s", (b.enqueued - a.enqueued) / s},
            {"completed_per_s", (b.completed - a.completed) / s},
            {"failed_per_s", (b.failed - a.failed) / s}};
  }

  std::map<std::string, history_point::queue_figures> history_figures() const {
    std::map<std::string, history_point::queue_figures> out;
    auto snapshots = env->queues.get();
    std::lock_guard<std::mutex> guard{mtx};
    for (const auto& [q, snap] : snapshots) {
      auto& f = out[q];
      f.depth = snap.counts.waiting + snap.counts.delayed + snap.counts.active;
      auto r = rates(q);
      f.failed_per_s = r["failed_per_s"].is_number() ? r["failed_per_s"].get<double>() : 0.0;
    }
    return out;
  }

  json status_json() const {
    auto snapshots = env->queues.get();
    auto pools = env->pools.get();
    auto mem = env->memory.get();
    auto now = clock.now_ms();
    json list = json::array();
    std::lock_guard<std::mutex> guard{mtx};
    for (const auto& [q, snap] : snapshots) {
      const auto& c = snap.counts;
      // The API's counts (GET /v1/queues/{q}) and what the status page adds: ages in seconds,
      // rates, the pool.
      json one = api::queue_json(q, c, json::object(), now);
      one.erase("settings");
      one.erase("waiting_by_type");
      one["oldest_waiting_age_s"] = one["oldest_waiting_age_ms"].get<std::int64_t>() / 1000.0;
      one["counted_age_s"] = (now - snap.counted_at_ms) / 1000.0;
      one.update(rates(q));
      if (auto p = pools.find(q); p != pools.end())
        one["workers"] = {{"concurrency", p->second.concurrency},
                          {"busy", p->second.busy},
                          {"circuits", p->second.circuits}};
      list.push_back(std::move(one));
    }
    bool unsafe = !mem.policy.empty() && mem.policy != "noeviction";
    return {{"redis",
             {{"up", redis->connected()},
              {"maxmemory_policy", mem.policy.empty() ? json(nullptr) : json(mem.policy)},
              {"eviction_unsafe", unsafe},
              {"memory_ratio", mem.known && mem.max > 0 ? json(static_cast<double>(mem.used) /
                                                               static_cast<double>(mem.max))
                                                        : json(nullptr)}}},
            {"lease_waiters", waiters->parked()},
            {"undecryptable", store->undecryptable()},
            {"in_flight", routes->in_flight()},
            {"list", list}};
  }

  std::string readiness_detail() const {
    auto mem = env->memory.get();
    std::string detail;
    if (!redis->connected())
      detail = "the queue's Redis is down" +
               (redis->last_error().empty() ? std::string() : ": " + redis->last_error());
    if (!mem.policy.empty() && mem.policy != "noeviction")
      detail += (detail.empty() ? "" : "; ") + std::string("maxmemory-policy is ") + mem.policy +
                ": jobs may be evicted (set noeviction)";
    if (auto why = memory_refusal(); !why.empty())
      detail += (detail.empty() ? "" : "; ") + std::string("enqueues refused: ") + why;
    return detail;
  }

  void drain(caf::actor_system& sys) {
    waiters->stop();
    std::vector<std::pair<std::string, messages::queue_manager_actor>> list;
    {
      std::lock_guard<std::mutex> guard{mtx};
      list.assign(managers.begin(), managers.end());
    }
    if (list.empty())
      return;
    caf::scoped_actor self{sys};
    auto limit = std::chrono::milliseconds(cfg.queues.shutdown_grace_ms + 5000);
    for (auto& [q, m] : list)
      self->send(caf::actor_cast<caf::actor>(m), messages::queue_drain_atom::value);
    for (std::size_t i = 0; i < list.size(); ++i)
      self->receive(
          [&](std::int64_t released) {
            if (released > 0)
              log_info("queues: " + std::to_string(released) +
                       " running jobs given back on shutdown");
          },
          caf::after(limit) >> [&] { log_warn("queues: a worker pool did not drain in time"); });
  }
};

queue_service::queue_service(queue_deps deps) : impl_(std::make_unique<impl>(deps)) {}

queue_service::~queue_service() {
  stop();
}

void queue_service::start_client() {
  if (impl_->own_redis)
    impl_->own_redis->start();
}

void queue_service::check_redis() {
  if (impl_->own_redis) {
    auto until = std::chrono::steady_clock::now() +
                 std::chrono::milliseconds(impl_->cfg.redis.connect_timeout_ms + 100);
    while (!impl_->own_redis->connected() && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  impl_->check_redis();
}

std::shared_ptr<api::queue_routes> queue_service::routes() const {
  return impl_->routes;
}

std::vector<actors::supervisor_options::extra_child> queue_service::children() {
  return impl_->children();
}

void queue_service::sample() {
  impl_->sample();
}

std::map<std::string, history_point::queue_figures> queue_service::history_figures() const {
  return impl_->history_figures();
}

nlohmann::json queue_service::status_json() const {
  return impl_->status_json();
}

bool queue_service::redis_up() const {
  return impl_->redis->connected();
}

std::string queue_service::readiness_detail() const {
  return impl_->readiness_detail();
}

void queue_service::drain(caf::actor_system& sys) {
  impl_->drain(sys);
}

void queue_service::stop() {
  if (!impl_)
    return;
  impl_->waiters->stop();
  impl_->webhooks->stop();
  if (impl_->own_redis)
    impl_->own_redis->stop();
}

} // namespace sessiond::app
