// Node wiring: io_context threads for HTTP and Redis, the CAF system and supervisor tree, the
// API handler; ordered start and graceful stop.
#include "app/node.hpp"

#include "actors/supervisor.hpp"
#include "adapters/http/server.hpp"
#include "adapters/metrics/text_serializer.hpp"
#include "adapters/redis/client.hpp"
#include "api/routes.hpp"
#include "app/log.hpp"
#include "app/node_metrics.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/exit_reason.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include <condition_variable>
#include <mutex>
#include <stdexcept>
#include <thread>

namespace sessiond::app {

namespace {

caf::actor_system_config make_caf_config(const config::config& c) {
  caf::actor_system_config cfg;
  cfg.set("scheduler.max-threads", static_cast<size_t>(c.node.actor_threads));
  cfg.set("logger.verbosity", caf::atom("quiet"));
  cfg.set("logger.console", caf::atom("none"));
  return cfg;
}

http::server_options http_options(const config::config& c) {
  http::server_options o;
  auto colon = c.http.listen.rfind(':');
  o.address = c.http.listen.substr(0, colon);
  o.port = static_cast<std::uint16_t>(std::stoi(c.http.listen.substr(colon + 1)));
  o.max_body_bytes = static_cast<std::size_t>(c.http.max_body_bytes);
  o.max_header_bytes = static_cast<std::size_t>(c.http.max_header_bytes);
  o.max_connections = static_cast<std::size_t>(c.http.max_connections);
  o.header_timeout = std::chrono::milliseconds(c.http.header_timeout_ms);
  o.idle_timeout = std::chrono::milliseconds(c.http.idle_timeout_ms);
  return o;
}

redis::client_options redis_options(const config::config& c) {
  redis::client_options o;
  std::string error;
  if (!redis::parse_url(c.redis.url, o, error))
    throw std::runtime_error("redis.url: " + error);
  o.connections = static_cast<std::size_t>(c.redis.connections);
  o.connect_timeout = std::chrono::milliseconds(c.redis.connect_timeout_ms);
  o.command_timeout = std::chrono::milliseconds(c.redis.command_timeout_ms);
  o.reconnect_min = std::chrono::milliseconds(c.redis.reconnect_min_ms);
  o.reconnect_max = std::chrono::milliseconds(c.redis.reconnect_max_ms);
  return o;
}

} // namespace

struct node::impl {
  config::config cfg;
  const model::clock& clock;
  caf::actor_system_config caf_cfg;
  caf::actor_system system;
  boost::asio::io_context io;
  std::unique_ptr<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work;
  std::vector<std::thread> threads;
  std::unique_ptr<redis::client> redis;
  std::shared_ptr<actors::shard_env> env;
  std::shared_ptr<api::route_table> routes;
  std::shared_ptr<api::shard_gate> gate;
  std::unique_ptr<http::server> http;
  std::shared_ptr<metrics::Registry> registry = std::make_shared<metrics::Registry>();
  std::unique_ptr<node_metrics> node_meters;
  messages::supervisor_actor supervisor;
  std::uint16_t port = 0;
  bool started = false;
  bool stopped = false;

  std::mutex mtx;
  std::condition_variable cv;
  bool stop_requested = false;
  int exit_code = 0;

  impl(config::config c, const model::clock& clk)
      : cfg(std::move(c)),
        clock(clk),
        caf_cfg(make_caf_config(cfg)),
        system(caf_cfg),
        io(static_cast<int>(cfg.http.io_threads)) {}

  void request_stop(int code) {
    std::lock_guard<std::mutex> guard{mtx};
    if (!stop_requested)
      exit_code = code;
    stop_requested = true;
    cv.notify_all();
  }

  void make_env() {
    env = std::make_shared<actors::shard_env>();
    env->redis = redis.get();
    env->clock = &clock;
    env->policy.touch_interval_s = cfg.sessions.touch_interval_s;
    env->policy.max_lifetime_s = cfg.sessions.max_lifetime_s;
    env->default_ttl_s = cfg.sessions.ttl_s;
    env->tombstone_ttl_s = cfg.sessions.tombstone_ttl_s;
    env->max_data_bytes = static_cast<std::size_t>(cfg.sessions.max_data_bytes);
    env->retry_after_s = cfg.sessions.retry_after_s;
    env->prefix = cfg.redis.key_prefix;
  }

  void spawn_supervisor() {
    auto opts = std::make_shared<actors::supervisor_options>();
    opts->shards = static_cast<std::size_t>(cfg.sessions.shards);
    opts->on_router = [t = routes](messages::router_actor a) { t->set_router(std::move(a)); };
    opts->on_shard = [t = routes](std::size_t i, messages::shard_actor s) {
      t->set_shard(i, std::move(s));
    };
    opts->on_escalate = [this](std::string why) {
      log_error(why);
      request_stop(1);
    };
    opts->log = [](std::string line) { log_warn(line); };
    supervisor = system.spawn(actors::supervisor, std::shared_ptr<const actors::shard_env>(env),
                              std::shared_ptr<const actors::supervisor_options>(opts));
  }

  api::api_options api_opts() {
    api::api_options o;
    o.limits.max_data_bytes = static_cast<std::size_t>(cfg.sessions.max_data_bytes);
    o.limits.max_ttl_s = cfg.sessions.max_lifetime_s;
    o.retry_after_s = cfg.sessions.retry_after_s;
    o.readiness = [r = redis.get()] {
      return std::vector<std::pair<std::string, bool>>{{"redis", r->connected()}};
    };
    if (cfg.metrics.enabled) {
      o.metrics = std::make_shared<api::api_metrics>(*registry);
      node_meters = std::make_unique<node_metrics>(*registry, gate->shards());
      o.metrics_text = [this] {
        node_meters->update(sample());
        return metrics::serialize(*registry);
      };
    }
    return o;
  }

  node_sample sample() const {
    node_sample s;
    s.redis = redis->stats();
    s.redis_up = redis->connected();
    s.redis_failures = env->counters.redis_failures.load();
    s.shard_restarts = env->counters.shard_restarts.load();
    s.router_restarts = env->counters.router_restarts.load();
    s.cas_retries = env->counters.cas_retries.load();
    s.touches = env->counters.touches.load();
    for (std::size_t i = 0; i < gate->shards(); ++i)
      s.in_flight.push_back(gate->in_flight(i));
    return s;
  }
};

node::node(config::config cfg, const model::clock& clock)
    : impl_(std::make_unique<impl>(std::move(cfg), clock)) {}

node::~node() {
  stop();
}

std::uint16_t node::start() {
  auto& d = *impl_;
  set_log_level(d.cfg.node.log_level);
  d.redis = std::make_unique<redis::client>(d.io, redis_options(d.cfg));
  d.redis->on_state_change([](bool up) {
    up ? log_info("redis: connected")
       : log_warn("redis: unreachable, answering 503 until it is back");
  });
  d.make_env();
  d.routes = std::make_shared<api::route_table>(static_cast<std::size_t>(d.cfg.sessions.shards));
  d.gate = std::make_shared<api::shard_gate>(static_cast<std::size_t>(d.cfg.sessions.shards),
                                             d.cfg.sessions.max_in_flight);
  d.spawn_supervisor();
  d.http = std::make_unique<http::server>(d.io, http_options(d.cfg),
                                          api::routes(d.api_opts(), d.routes, d.gate));
  d.work =
      std::make_unique<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>>(
          d.io.get_executor());
  d.redis->start();
  d.port = d.http->start();
  for (std::int64_t i = 0; i < d.cfg.http.io_threads; ++i)
    d.threads.emplace_back([&io = d.io] { io.run(); });
  d.started = true;
  return d.port;
}

void node::stop() {
  auto& d = *impl_;
  if (!d.started || d.stopped)
    return;
  d.stopped = true;
  d.http->stop_accepting();
  auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(d.cfg.http.drain_timeout_ms);
  while (d.http->in_flight() > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  caf::anon_send_exit(d.supervisor, caf::exit_reason::user_shutdown);
  d.redis->stop();
  d.work.reset();
  d.io.stop();
  for (auto& t : d.threads)
    t.join();
  d.threads.clear();
  d.http.reset();
  d.system.await_all_actors_done();
}

int node::wait_for_stop() {
  auto& d = *impl_;
  std::unique_lock<std::mutex> lock{d.mtx};
  d.cv.wait(lock, [&] { return d.stop_requested; });
  return d.exit_code;
}

void node::request_stop(int code) {
  impl_->request_stop(code);
}

caf::actor_system& node::system() {
  return impl_->system;
}

messages::router_actor node::router() const {
  return impl_->routes->router();
}

std::uint16_t node::port() const {
  return impl_->port;
}

const config::config& node::cfg() const {
  return impl_->cfg;
}

node_stats node::stats() const {
  const auto& d = *impl_;
  node_stats s;
  s.backpressure_rejections = d.gate ? d.gate->rejected() : 0;
  if (d.env) {
    s.redis_failures = d.env->counters.redis_failures.load();
    s.shard_restarts = d.env->counters.shard_restarts.load();
    s.router_restarts = d.env->counters.router_restarts.load();
  }
  s.redis_up = d.redis && d.redis->connected();
  return s;
}

} // namespace sessiond::app
