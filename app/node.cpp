// Node wiring: io_context threads for HTTP and Redis, the CAF system and supervisor tree, the
// API handler; ordered start and graceful stop.
#include "app/node.hpp"

#include "actors/retention.hpp"
#include "actors/session_shard.hpp"
#include "actors/supervisor.hpp"
#include "actors/sync.hpp"
#include "adapters/http/server.hpp"
#include "adapters/metrics/text_serializer.hpp"
#include "adapters/postgres/migrate.hpp"
#include "adapters/postgres/pool.hpp"
#include "adapters/redis/blocking.hpp"
#include "adapters/redis/client.hpp"
#include "api/routes.hpp"
#include "api/status_page.hpp"
#include "app/adapter_options.hpp"
#include "app/auth.hpp"
#include "app/cache.hpp"
#include "app/cluster.hpp"
#include "app/encryption.hpp"
#include "app/log.hpp"
#include "app/node_metrics.hpp"
#include "app/node_registry.hpp"
#include "app/queues.hpp"
#include "app/redis_poller.hpp"
#include "app/session_modes.hpp"
#include "app/status_history.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/exit_reason.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <future>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace sessiond::app {

namespace {

caf::actor_system_config make_caf_config(const config::config& c) {
  caf::actor_system_config cfg;
  cfg.set("scheduler.max-threads", static_cast<size_t>(c.node.actor_threads));
  // One shared queue with a condition variable instead of work stealing: stealing workers poll
  // (and nanosleep) for ~25 ms after every message, so the queue keeper's and the sync's timers
  // kept an idle node at 9-10% of a core; sharing idles at under 1% with the same PATCH and
  // queue throughput (docs/performance.md, "Actor scheduler").
  cfg.set("scheduler.policy", caf::atom("sharing"));
  cfg.set("logger.verbosity", caf::atom("quiet"));
  cfg.set("logger.console", caf::atom("none"));
  return cfg;
}

nlohmann::json sync_report_json(const messages::sync_report& r) {
  return {{"synced", r.synced},
          {"read", r.read},
          {"repaired", r.repaired},
          {"rejected", r.rejected},
          {"skipped_sets", r.skipped_sets},
          {"partitions", r.partitions.size()},
          {"duration_ms", r.duration_ms}};
}

/// Why a Redis call failed ("Redis: …" naming the transport failure or the error reply), or empty.
std::string redis_failure(redis::errc e, const redis::reply& r) {
  if (e != redis::errc::ok)
    return std::string("Redis: ") + redis::to_string(e);
  return r.is_error() ? "Redis: " + r.str : std::string();
}

/// The rejected hash (id → "<set> <version> <ms> <reason>") as {"count", "sessions": [{"id",
/// "version", "rejected_at", "error"}]}, oldest first, at most 1,000 entries.
nlohmann::json rejected_json(const redis::reply& r) {
  struct entry {
    std::string id;
    std::int64_t version = 0, at_ms = 0;
    std::string error;
  };
  std::vector<entry> all;
  for (std::size_t i = 0; i + 1 < r.elements.size(); i += 2) {
    std::istringstream in(r.elements[i + 1].str);
    entry e;
    std::size_t set = 0;
    e.id = r.elements[i].str;
    in >> set >> e.version >> e.at_ms;
    std::getline(in >> std::ws, e.error);
    all.push_back(std::move(e));
  }
  std::sort(all.begin(), all.end(), [](const entry& a, const entry& b) {
    return a.at_ms != b.at_ms ? a.at_ms < b.at_ms : a.id < b.id;
  });
  auto list = nlohmann::json::array();
  for (std::size_t i = 0; i < all.size() && i < 1000; ++i)
    list.push_back({{"id", all[i].id},
                    {"version", all[i].version},
                    {"rejected_at", model::rfc3339_ms(all[i].at_ms)},
                    {"error", all[i].error}});
  return {{"count", all.size()}, {"sessions", std::move(list)}};
}

} // namespace

struct node::impl {
  config::config cfg;
  const model::clock& clock;
  caf::actor_system_config caf_cfg;
  caf::actor_system system;
  /// One io_context per I/O thread, each run by its thread alone (concurrency hint 1: no locks
  /// or wake-ups between threads). HTTP connections and Redis connections are spread over
  /// them, so a session op starts and ends on one thread; timers run on the first (`io`).
  /// Destroyed last to first: a handler still queued on loop i > 0 may hold the last reference
  /// to a Redis connection whose client state has a strand on loop 0, which must still exist.
  struct loop_list : std::vector<std::unique_ptr<boost::asio::io_context>> {
    using vector::vector;
    explicit loop_list(vector v) : vector(std::move(v)) {}
    loop_list(const loop_list&) = delete;
    loop_list& operator=(const loop_list&) = delete;
    ~loop_list() {
      while (!empty())
        pop_back();
    }
  };
  loop_list loops;
  boost::asio::io_context& io;
  std::vector<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work;
  std::vector<std::thread> threads;
  std::unique_ptr<redis::client> redis;
  std::shared_ptr<actors::shard_env> env;
  /// The keyring (encryption.keys_file) and its counters; shared by the session path and sync.
  std::shared_ptr<actors::session_crypto> crypto = std::make_shared<actors::session_crypto>();
  std::unique_ptr<encryption_metrics> crypto_meters;
  /// Sessions served from PostgreSQL: read-through on Redis misses, the modes, degraded.
  std::unique_ptr<postgres::pool> pg_pool;
  std::unique_ptr<session_modes> modes;
  std::mutex pg_probe_mtx;
  std::chrono::steady_clock::time_point pg_probe_at{};
  std::atomic<bool> pg_probe_up{true};
  std::shared_ptr<api::route_table> routes;
  std::shared_ptr<api::shard_gate> gate;
  std::unique_ptr<http::server> http;
  std::shared_ptr<api::auth_gate> auth; ///< null: no tokens file, the API is open
  std::shared_ptr<metrics::Registry> registry = std::make_shared<metrics::Registry>();
  std::unique_ptr<node_metrics> node_meters;
  metrics::redis_info_metrics redis_info{*registry}; ///< INFO polled whatever metrics.enabled
  std::unique_ptr<redis_poller> redis_poll;
  std::unique_ptr<queue_service> queues;
  std::unique_ptr<cache_service> cache;
  messages::supervisor_actor supervisor;
  std::shared_ptr<messages::sync_status> sync_status = std::make_shared<messages::sync_status>();
  std::shared_ptr<messages::retention_info> retention_info =
      std::make_shared<messages::retention_info>();
  std::shared_ptr<actors::retention_options> retention_opts;
  messages::retention_actor retention;
  std::shared_ptr<actors::sync_engine> sync_engine;
  std::shared_ptr<actors::sync_options> sync_opts;
  std::mutex sync_mtx;       ///< guards the handles of the sync and retention actors
  messages::sync_actor sync; ///< the current handle (a restarted actor has a new one)
  std::shared_ptr<api::op_stats> stats = std::make_shared<api::op_stats>();
  std::unique_ptr<boost::asio::steady_timer> sample_timer;
  unsigned sample_ticks = 1; ///< from 1: the start wrote and checked the entry just before
  std::atomic<std::int64_t> mode_conflicts{0}; ///< live nodes in a mode incompatible with ours
  std::mutex registry_mtx;
  std::string registry_logged; ///< the conflict last logged ("" none)
  bool registry_left = false;  ///< the entry was removed: no refresh writes it again
  std::mutex samples_mtx;
  std::deque<std::pair<std::chrono::steady_clock::time_point, api::op_stats::totals>> samples;
  status_history history; ///< the status page's charts
  std::pair<std::chrono::steady_clock::time_point, std::uint64_t> history_requests{};
  std::uint16_t port = 0;
  bool started = false;
  bool stopped = false;
  node_identity identity; ///< what GET /v1/cluster says of this node

  std::mutex mtx;
  std::condition_variable cv;
  bool stop_requested = false;
  int exit_code = 0;

  impl(config::config c, const model::clock& clk)
      : cfg(std::move(c)),
        clock(clk),
        caf_cfg(make_caf_config(cfg)),
        system(caf_cfg),
        loops(make_loops(cfg.http.io_threads)),
        io(*loops.front()) {}

  static std::vector<std::unique_ptr<boost::asio::io_context>> make_loops(std::int64_t n) {
    std::vector<std::unique_ptr<boost::asio::io_context>> out;
    for (std::int64_t i = 0; i < std::max<std::int64_t>(1, n); ++i)
      out.push_back(std::make_unique<boost::asio::io_context>(1));
    return out;
  }

  std::vector<boost::asio::io_context*> loop_ptrs() const {
    std::vector<boost::asio::io_context*> out;
    for (const auto& l : loops)
      out.push_back(l.get());
    return out;
  }

  void run_loops() {
    for (auto& l : loops) {
      work.push_back(boost::asio::make_work_guard(*l));
      threads.emplace_back([&io = *l] { io.run(); });
    }
  }

  void stop_loops() {
    work.clear();
    for (auto& l : loops)
      l->stop();
    for (auto& t : threads)
      t.join();
    threads.clear();
  }

  void request_stop(int code) {
    std::lock_guard<std::mutex> guard{mtx};
    if (!stop_requested)
      exit_code = code;
    stop_requested = true;
    cv.notify_all();
  }

  void make_env() {
    env = std::make_shared<actors::shard_env>();
    env->crypto = crypto;
    env->redis = redis.get();
    env->clock = &clock;
    env->policy.touch_interval_s = cfg.sessions.touch_interval_s;
    env->policy.max_lifetime_s = cfg.sessions.max_lifetime_s;
    env->default_ttl_s = cfg.sessions.ttl_s;
    env->tombstone_ttl_s = cfg.sessions.tombstone_ttl_s;
    env->max_data_bytes = static_cast<std::size_t>(cfg.sessions.max_data_bytes);
    env->retry_after_s = cfg.sessions.retry_after_s;
    env->prefix = cfg.redis.key_prefix;
    env->keys = model::key_layout{cfg.redis.key_prefix};
    env->wait_replicas = static_cast<int>(cfg.redis.wait_replicas);
    env->wait_timeout = std::chrono::milliseconds(cfg.redis.wait_timeout_ms);
    env->legacy = true; // until the sync's upgrade pass finds Redis upgraded
    env->activity_interval_ms = cfg.sync.activity_interval_s * 1000;
    pg_pool = std::make_unique<postgres::pool>(
        postgres_options(cfg), static_cast<std::size_t>(cfg.postgres.pool_size), 4096);
    env->load_user_rows = [p = pg_pool.get(), e = env.get(),
                           this](const std::string& uid, actors::shard_env::rows_callback done) {
      auto limit = e->max_user_sessions;
      auto now = clock.now_ms();
      return p->submit([uid, done, limit, now](postgres::client* c) {
        if (!c)
          return done(std::nullopt);
        std::vector<postgres::session_row> rows;
        try {
          rows = postgres::load_user_sessions(*c, uid, now, limit);
        } catch (const postgres::pg_error&) {
          done(std::nullopt);
          throw; // drops the connection; the next lookup connects again
        }
        done(std::move(rows));
      });
    };
    env->load_row = [p = pg_pool.get()](const std::string& id,
                                        actors::shard_env::row_callback done) {
      return p->submit([id, done](postgres::client* c) {
        if (!c)
          return done(std::nullopt);
        std::optional<postgres::session_row> row;
        try {
          row = postgres::load_session(*c, id);
        } catch (const postgres::pg_error&) {
          done(std::nullopt);
          throw; // drops the connection; the next lookup connects again
        }
        done(std::move(row));
      });
    };
  }

  /// The routing of sessions.mode and the degraded fallback (see session_modes).
  void make_modes() {
    modes_options o;
    o.mode = parse_mode(cfg.sessions.mode);
    o.fallback = cfg.sessions.on_redis_down == "postgres";
    o.shards = static_cast<std::size_t>(cfg.sessions.shards);
    o.db = postgres_options(cfg);
    o.store.policy = env->policy;
    o.store.default_ttl_s = env->default_ttl_s;
    o.store.tombstone_ttl_s = env->tombstone_ttl_s;
    o.store.max_data_bytes = env->max_data_bytes;
    o.store.max_user_sessions = env->max_user_sessions;
    o.start_grace = std::chrono::milliseconds(cfg.redis.connect_timeout_ms + 100);
    o.redis_wait = std::chrono::milliseconds(cfg.redis.command_timeout_ms * 2 + 1000);
    o.retry_after_s = cfg.sessions.retry_after_s;
    o.info = [](const std::string& line) { log_info(line); };
    o.warn = [](const std::string& line) { log_warn(line); };
    modes = std::make_unique<session_modes>(std::move(o), *env, *pg_pool);
    if (modes->mode() == session_mode::redis_read)
      env->on_touch = [m = modes.get()](const model::session& s) { m->slide(s); };
  }

  /// Leaving redis-primary syncs first: a node started in another mode writes the dirty
  /// backlog Redis holds to PostgreSQL before it serves, since it will write PostgreSQL first
  /// and must not build on older rows. Redis unreachable: nothing can be synced (a warning;
  /// the postgres mode is the rollback path and must start). PostgreSQL failing: start fails.
  void sync_backlog_first() {
    if (modes->mode() == session_mode::redis_primary)
      return;
    std::int64_t backlog = 0;
    try {
      backlog = sync_engine->backlog();
    } catch (const actors::sync_error& e) {
      log_warn(std::string("mode ") + cfg.sessions.mode + ": Redis unreachable at start (" +
               e.what() + "); a redis-primary backlog left there cannot be synced first");
      return;
    }
    if (backlog == 0)
      return;
    log_info(std::string("mode ") + cfg.sessions.mode + ": syncing the redis-primary backlog of " +
             std::to_string(backlog) + " sessions before serving");
    for (int attempt = 1;; ++attempt) {
      try {
        auto counts = sync_engine->run();
        if (counts.skipped_sets == 0) {
          log_info("backlog synced: " + std::to_string(counts.written) + " rows written");
          return;
        }
      } catch (const actors::sync_error& e) {
        if (attempt >= 5)
          throw std::runtime_error(std::string("sessions.mode = ") + cfg.sessions.mode +
                                   ": the redis-primary backlog of " + std::to_string(backlog) +
                                   " sessions could not be synced first: " + e.what());
        log_warn(std::string("backlog sync failed, retrying: ") + e.what());
      }
      std::this_thread::sleep_for(std::chrono::seconds(1));
    }
  }

  /// Redis gets `redis.connect_timeout_ms` at start before it counts as down.
  void wait_for_redis() {
    auto until = std::chrono::steady_clock::now() +
                 std::chrono::milliseconds(cfg.redis.connect_timeout_ms + 100);
    while (!redis->connected() && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }

  /// Before serving: live nodes in a mode that cannot run next to ours stop the start
  /// (sessions.mixed_modes = "refuse") or are logged ("warn"); then this node's entry is
  /// written. Redis unreachable: nothing to look at (a warning; the postgres mode must start).
  void check_other_nodes() {
    identity = {cfg.node.id, cfg.http.listen, SESSIOND_VERSION, clock.now_ms()};
    const auto limit = std::chrono::milliseconds(cfg.redis.command_timeout_ms);
    auto entries =
        redis::command_wait(*redis, 0, {"HGETALL", registry_key(cfg.redis.key_prefix)}, limit);
    if (entries.error != redis::errc::ok || entries.value.is_error()) {
      log_warn("mode " + cfg.sessions.mode + ": cannot see the modes of other nodes (Redis: " +
               (entries.error != redis::errc::ok ? std::string(redis::to_string(entries.error))
                                                 : entries.value.str) +
               "); starting without that check");
      return;
    }
    auto view = registry_of(entries.value);
    if (!view.conflicting.empty()) {
      auto line = conflict_message(cfg.sessions.mode, view.conflicting, clock.now_ms(), true);
      if (cfg.sessions.mixed_modes == "refuse")
        throw std::runtime_error(line);
      log_warn(line);
      std::lock_guard<std::mutex> guard{registry_mtx};
      registry_logged = line;
    }
    mode_conflicts = static_cast<std::int64_t>(view.conflicting.size());
    redis::command_wait(*redis, 0, registry_entry(), limit);
    redis::command_wait(*redis, 0, info_entry(), limit);
  }

  /// The HSET of this node's address, version and sync partitions, beside its registry entry.
  std::vector<std::string> info_entry() {
    sync_activity activity;
    if (sync_engine) {
      auto sy = sync_status->get();
      activity = {true, std::move(sy.last_partitions), sy.last_success_ms, sync_engine->holding()};
    }
    return {"HSET", node_info_key(cfg.redis.key_prefix), cfg.node.id,
            node_info_value(identity, activity)};
  }

  /// Writes this node's info entry now, unless the node left the registry (stopping).
  void publish_info() {
    std::lock_guard<std::mutex> guard{registry_mtx};
    if (!registry_left && redis)
      redis->command(0, info_entry(), [](redis::errc, redis::reply&&) {});
  }

  /// The HSET that writes this node's entry, seen now.
  std::vector<std::string> registry_entry() {
    return {"HSET", registry_key(cfg.redis.key_prefix), cfg.node.id,
            registry_value(cfg.sessions.mode, clock.now_ms())};
  }

  registry_view registry_of(const redis::reply& hash) {
    std::vector<std::pair<std::string, std::string>> entries;
    for (std::size_t i = 0; i + 1 < hash.elements.size(); i += 2)
      entries.emplace_back(hash.elements[i].str, hash.elements[i + 1].str);
    auto view = read_registry(entries, cfg.node.id, cfg.sessions.mode, clock.now_ms());
    if (!view.stale.empty()) {
      std::vector<std::string> hdel{"HDEL", registry_key(cfg.redis.key_prefix)};
      hdel.insert(hdel.end(), view.stale.begin(), view.stale.end());
      redis->command(0, std::move(hdel), [](redis::errc, redis::reply&&) {});
    }
    return view;
  }

  /// Every registry_refresh_ms while serving: this node's entry written again, and the other
  /// nodes looked at; a conflict (a node started with "warn", or while Redis was down) is logged
  /// when it appears and when it ends, and counted in sessiond_mode_conflicts.
  void refresh_registry() {
    const auto key = registry_key(cfg.redis.key_prefix);
    {
      // Sent under the lock, so a stop's HDEL (sent after registry_left is set) comes after it.
      std::lock_guard<std::mutex> guard{registry_mtx};
      if (registry_left)
        return;
      redis->command(0, registry_entry(), [](redis::errc, redis::reply&&) {});
      redis->command(0, info_entry(), [](redis::errc, redis::reply&&) {});
    }
    redis->command(0, {"HGETALL", key}, [this](redis::errc e, redis::reply&& r) {
      if (e != redis::errc::ok || r.is_error())
        return; // Redis down: sessiond_redis_up says so; the entries are looked at again later
      auto view = registry_of(r);
      mode_conflicts = static_cast<std::int64_t>(view.conflicting.size());
      auto line = view.conflicting.empty() ? std::string()
                                           : conflict_message(cfg.sessions.mode, view.conflicting,
                                                              clock.now_ms(), false);
      std::lock_guard<std::mutex> guard{registry_mtx};
      if (line.empty() != registry_logged.empty()) {
        if (line.empty())
          log_info("mode " + cfg.sessions.mode + ": no live node runs an incompatible mode now");
        else
          log_error(line);
      }
      registry_logged = line;
    });
  }

  /// This node's entry removed on a clean stop, so its mode no longer holds other nodes back.
  void leave_registry() {
    {
      std::lock_guard<std::mutex> guard{registry_mtx};
      registry_left = true;
    }
    if (redis->connected()) {
      redis::command_wait(*redis, 0, {"HDEL", registry_key(cfg.redis.key_prefix), cfg.node.id},
                          std::chrono::milliseconds(500));
      redis::command_wait(*redis, 0, {"HDEL", node_info_key(cfg.redis.key_prefix), cfg.node.id},
                          std::chrono::milliseconds(500));
    }
  }

  void spawn_supervisor() {
    auto opts = std::make_shared<actors::supervisor_options>();
    opts->shards = static_cast<std::size_t>(cfg.sessions.shards);
    opts->on_router = [t = routes](messages::router_actor a) { t->set_router(std::move(a)); };
    opts->on_shard = [t = routes](std::size_t i, messages::shard_actor s) {
      t->set_shard(i, std::move(s));
    };
    if (cfg.sessions.mode != "postgres") // nothing is written behind; see sync_backlog_first()
      opts->extra.push_back({"sync", [this](caf::actor_system& sys) {
                               auto s = actors::spawn_sync(sys, sync_engine, sync_opts, sync_status,
                                                           clock);
                               std::lock_guard<std::mutex> guard{sync_mtx};
                               sync = s;
                               return caf::actor_cast<caf::strong_actor_ptr>(s);
                             }});
    opts->extra.push_back({"retention", [this](caf::actor_system& sys) {
                             auto r = actors::spawn_retention(sys, retention_opts, *registry,
                                                              retention_info, clock);
                             std::lock_guard<std::mutex> guard{sync_mtx};
                             retention = r;
                             return caf::actor_cast<caf::strong_actor_ptr>(r);
                           }});
    if (cache)
      for (auto& child : cache->children())
        opts->extra.push_back(std::move(child));
    for (auto& child : queues->children())
      opts->extra.push_back(std::move(child));
    opts->on_escalate = [this](std::string why) {
      log_error(why);
      request_stop(1);
    };
    opts->log = [](std::string line) { log_warn(line); };
    supervisor = system.spawn(actors::supervisor, std::shared_ptr<const actors::shard_env>(env),
                              std::shared_ptr<const actors::supervisor_options>(opts));
  }

  /// Applies the embedded migrations when postgres.migrate_on_start. A schema problem stops
  /// start-up; an unreachable PostgreSQL does not (Redis takes the writes; the sync actor
  /// applies the migrations when it first connects).
  void migrate() {
    if (!cfg.postgres.migrate_on_start)
      return;
    try {
      postgres::client c(postgres_options(cfg));
      postgres::create_schema(c, cfg.postgres.schema);
      for (const auto& name : postgres::apply_migrations(c, postgres::embedded_migrations()))
        log_info("postgres: applied migration " + name);
    } catch (const postgres::pg_error& e) {
      if (e.code() == postgres::errc::connect_failed ||
          e.code() == postgres::errc::connect_timeout ||
          e.code() == postgres::errc::connection_lost) {
        log_warn(std::string("postgres: unreachable at start (") + e.what() +
                 "); sessions land in Redis and sync retries in the background");
        return;
      }
      throw std::runtime_error(std::string("postgres migrations: ") + e.what());
    }
  }

  /// The sync engine and options; the supervisor (re)spawns the actor around them.
  void make_sync() {
    actors::sync_settings st;
    st.prefix = cfg.redis.key_prefix;
    st.first_hint = static_cast<std::size_t>(cfg.sessions.shards);
    st.legacy_sets = static_cast<std::size_t>(config::max_shards);
    st.legacy = &env->legacy;
    st.max_lifetime_ms = cfg.sessions.max_lifetime_s * 1000;
    st.batch_size = static_cast<std::size_t>(cfg.sync.batch_size);
    st.node_id = cfg.node.id;
    st.lease_ttl = std::chrono::milliseconds(cfg.postgres.statement_timeout_ms + 5000);
    st.redis_wait = std::chrono::milliseconds(cfg.redis.command_timeout_ms * 2 + 1000);
    st.tombstone_ttl_ms = cfg.sessions.tombstone_ttl_s * 1000;
    st.migrate = cfg.postgres.migrate_on_start;
    st.connections = static_cast<std::size_t>(cfg.sync.connections);
    st.max_rejected_per_run = static_cast<std::size_t>(cfg.sync.max_rejected_per_run);
    st.crypto = crypto;
    st.rotate_batch = static_cast<std::size_t>(cfg.encryption.rotate_batch);
    st.rotate_interval_ms = cfg.encryption.rotate_interval_s * 1000;
    sync_engine = std::make_shared<actors::sync_engine>(*redis, env->scripts, postgres_options(cfg),
                                                        st, clock);
    auto opts = std::make_shared<actors::sync_options>();
    opts->interval = std::chrono::milliseconds(cfg.sync.interval_ms);
    opts->tick = std::min(opts->interval, std::chrono::milliseconds(1000));
    opts->max_dirty = cfg.sync.max_dirty;
    opts->backoff = {std::min<std::int64_t>(500, cfg.sync.max_backoff_ms), cfg.sync.max_backoff_ms};
    opts->log = log_at;
    opts->on_run = [this](const messages::sync_report& r) {
      if (node_meters)
        node_meters->observe_sync(r);
      if (r.ok)
        publish_info(); // GET /v1/cluster shows the partitions this run drained at once
    };
    sync_opts = std::move(opts);
  }

  /// The retention actor's options: detached, its own PostgreSQL connection, daily at
  /// retention.at; the supervisor (re)spawns it.
  void make_retention() {
    retention_opts =
        std::make_shared<actors::retention_options>(actors::make_retention_options(cfg));
    retention_opts->db = postgres_options(cfg);
    retention_opts->log = log_at;
  }

  void request_retention(bool dry_run, api::answer_fn answer) {
    ask(
        locked(retention), caf::infinite,
        [answer](messages::retention_report& rep) {
          if (rep.status == postgres::retention_status::failed)
            answer(503, "retention failed: " + rep.error);
          else
            answer(200, actors::retention_report_json(rep).dump());
        },
        [answer](const std::string& why) { answer(503, "retention did not answer: " + why); },
        messages::retention_run_atom::value, dry_run);
  }

  /// Sends `args` to `to` from a one-shot actor (the callers are HTTP and stop threads, not
  /// actors) and calls `on_reply` with the answer, or `on_error` with why there is none.
  template <class Handle, class Timeout, class OnReply, class... Ts>
  void ask(Handle to, Timeout timeout, OnReply on_reply,
           std::function<void(const std::string&)> on_error, Ts... args) {
    // `to` goes in as a spawn argument: CAF 0.17 dereferences a null argument tuple when a
    // function actor is spawned without one (UBSan: reference binding to null pointer).
    system.spawn(
        [=](caf::event_based_actor* self, const Handle& dest) {
          self->request(dest, timeout, args...).then(on_reply, [on_error](caf::error& e) {
            on_error(caf::to_string(e));
          });
        },
        std::move(to));
  }

  /// A copy of the current handle of a supervised actor (the supervisor replaces it).
  template <class Handle>
  Handle locked(const Handle& h) {
    std::lock_guard<std::mutex> guard{sync_mtx};
    return h;
  }

  messages::sync_actor sync_handle() { return locked(sync); }

  /// Runs a sync now and calls `done` with its report (from a CAF thread).
  void request_sync(std::function<void(messages::sync_report)> done) {
    auto timeout = std::chrono::milliseconds(cfg.postgres.statement_timeout_ms * 4 +
                                             cfg.postgres.connect_timeout_ms);
    ask(
        sync_handle(), timeout, [done](messages::sync_report& r) { done(std::move(r)); },
        [done](const std::string& why) {
          messages::sync_report r;
          r.error = "sync did not answer: " + why;
          done(std::move(r));
        },
        messages::sync_now_atom::value);
  }

  std::string rejected_key() const { return actors::rejected_hash_key(cfg.redis.key_prefix); }

  /// GET /v1/admin/sync/rejected: the sessions the sync set aside because PostgreSQL refused
  /// their row, oldest first (at most 1,000 listed; `count` says how many there are).
  void list_rejected(api::answer_fn answer) {
    redis->command(redis->local_hint(0), {"HGETALL", rejected_key()},
                   [answer](redis::errc e, redis::reply&& r) {
                     if (auto why = redis_failure(e, r); !why.empty())
                       return answer(503, why);
                     answer(200, rejected_json(r).dump());
                   });
  }

  /// POST /v1/admin/sync/rejected/requeue: marks every set-aside session dirty again, for the
  /// next sync to try (after the table or the data was fixed).
  /// Each id goes back into its partition's dirty set (ZADD NX, in its slot), then leaves the
  /// hash (HDEL): a failure half-way leaves it in both, which the next requeue repeats harmlessly.
  void requeue_rejected(api::answer_fn answer) {
    auto hint = redis->local_hint(0);
    redis->command(
        hint, {"HKEYS", rejected_key()}, [this, answer, hint](redis::errc e, redis::reply&& r) {
          if (auto why = redis_failure(e, r); !why.empty())
            return answer(503, why);
          struct pending {
            std::atomic<std::size_t> left{0};
            std::atomic<bool> failed{false};
            std::string why;
            std::vector<std::string> ids;
          };
          auto p = std::make_shared<pending>();
          for (auto& id : r.elements)
            p->ids.push_back(std::move(id.str));
          if (p->ids.empty())
            return answer(200, nlohmann::json{{"requeued", 0}}.dump());
          p->left = p->ids.size();
          auto now = std::to_string(clock.now_ms());
          for (const auto& id : p->ids)
            redis->command(
                hint, {"ZADD", env->keys.dirty(model::partition_of(id)), "NX", now, id},
                [this, p, answer, hint](redis::errc e2, redis::reply&& r2) {
                  if (auto why = redis_failure(e2, r2); !why.empty() && !p->failed.exchange(true))
                    p->why = why;
                  if (--p->left != 0)
                    return;
                  if (p->failed)
                    return answer(503, p->why);
                  std::vector<std::string> hdel{"HDEL", rejected_key()};
                  hdel.insert(hdel.end(), p->ids.begin(), p->ids.end());
                  redis->command(hint, std::move(hdel),
                                 [p, answer](redis::errc e3, redis::reply&& r3) {
                                   if (auto why = redis_failure(e3, r3); !why.empty())
                                     return answer(503, why);
                                   answer(200, nlohmann::json{{"requeued", p->ids.size()}}.dump());
                                 });
                });
        });
  }

  /// Samples op_stats once a second, keeping ~10 s for the /v1/status window.
  void sample_ops() {
    {
      std::lock_guard<std::mutex> guard{samples_mtx};
      samples.emplace_back(std::chrono::steady_clock::now(), stats->read());
      while (samples.size() > 11)
        samples.pop_front();
    }
    queues->sample();
    if (cache)
      cache->sample();
    if (sample_ticks % status_history::step.count() == 1)
      record_history();
    if (sample_ticks++ % (registry_refresh_ms / 1000) == 0 && redis->connected())
      refresh_registry();
    sample_timer->expires_after(std::chrono::seconds(1));
    sample_timer->async_wait([this](const boost::system::error_code& ec) {
      if (!ec)
        sample_ops();
    });
  }

  /// One point of the status page's charts: requests/s since the last point, the session p99
  /// and the sync backlog now, each queue's depth and failures/s.
  void record_history() {
    history_point p;
    p.at_ms = clock.now_ms();
    auto now = std::chrono::steady_clock::now();
    auto requests = http->stats().requests;
    auto& [at, before] = history_requests;
    if (before > 0 || at != std::chrono::steady_clock::time_point{})
      p.requests_per_s = static_cast<double>(requests - before) /
                         std::max(1e-3, std::chrono::duration<double>(now - at).count());
    history_requests = {now, requests};
    p.p99_ms = op_window().latency_p99_ms;
    p.sync_backlog = sync_status->get().backlog;
    p.queues = queues->history_figures();
    history.record(std::move(p));
  }

  api::op_window op_window() {
    std::lock_guard<std::mutex> guard{samples_mtx};
    if (samples.size() < 2)
      return {};
    auto& a = samples.front();
    auto& b = samples.back();
    return api::between(a.second, b.second,
                        std::chrono::duration<double>(b.first - a.first).count());
  }

  std::string status_json() {
    auto w = op_window();
    auto sy = sync_status->get();
    auto now = clock.now_ms();
    nlohmann::json j;
    j["node"] = cfg.node.id;
    auto m = modes->snapshot();
    j["mode"] = cfg.sessions.mode;
    j["degraded"] = m.degraded;
    j["sessions"] = {{"redis_state", to_string(m.state)},
                     {"served_from_postgres", m.served_postgres},
                     {"mirror_failures", m.mirror_failures},
                     {"put_back", m.put_back},
                     {"put_back_pending",
                      m.repairs_pending < 0 ? nlohmann::json() : nlohmann::json(m.repairs_pending)},
                     {"state_changes", m.state_changes}};
    {
      std::lock_guard<std::mutex> guard{registry_mtx};
      j["sessions"]["mode_conflicts"] = mode_conflicts.load();
      j["sessions"]["mode_conflict"] =
          registry_logged.empty() ? nlohmann::json() : nlohmann::json(registry_logged);
    }
    j["redis"] = {{"up", redis->connected()},
                  {"writes_per_s", w.writes_per_s},
                  {"ops_per_s", w.ops_per_s},
                  {"latency_avg_ms", w.latency_avg_ms},
                  {"latency_p99_ms", w.latency_p99_ms}};
    auto ri = redis_info.latest(); // Redis INFO: null until the first poll
    auto polled = [&ri](nlohmann::json v) { return ri.valid ? v : nlohmann::json(); };
    auto& jr = j["redis"];
    jr["used_memory_bytes"] = polled(ri.used_memory_bytes);
    jr["maxmemory_bytes"] = polled(ri.maxmemory_bytes);
    jr["memory_ratio"] = polled(ri.memory_ratio);
    jr["maxmemory_policy"] =
        ri.maxmemory_policy.empty() ? nlohmann::json() : polled(ri.maxmemory_policy);
    jr["eviction_unsafe"] = polled(ri.eviction_unsafe);
    jr["evicted_keys"] = polled(ri.evicted_keys);
    jr["topology"] = redis_topology_json(*redis);
    j["postgres"] = {{"up", sy.postgres_up}};
    j["sync"] = {{"backlog", sy.backlog},
                 {"last_success_age_s", sy.last_success_ms
                                            ? nlohmann::json((now - sy.last_success_ms) / 1000.0)
                                            : nlohmann::json()},
                 {"last_duration_ms", sy.last_duration_ms},
                 {"failed", sy.failures},
                 {"runs", sy.runs},
                 {"rows_written", sy.rows_written},
                 {"repaired", sy.repaired},
                 {"rejected", sy.rejected < 0 ? nlohmann::json() : nlohmann::json(sy.rejected)},
                 {"rejected_total", sy.rejected_total},
                 {"circuit", sy.circuit},
                 {"interval_ms", cfg.sync.interval_ms},
                 {"last_error", sy.last_error}};
    j["encryption"] = encryption_status(*crypto);
    j["queues"] = queues->status_json();
    if (cache)
      j["cache"] = cache->status_json();
    j["history"] = history.json();
    {
      auto [at, before] = history_requests;
      double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - at).count();
      j["http"] = {
          {"requests_per_s",
           at == std::chrono::steady_clock::time_point{} || secs <= 0
               ? nlohmann::json()
               : nlohmann::json(static_cast<double>(http->stats().requests - before) / secs)}};
    }
    auto ret = retention_info->get();
    j["retention"] = {
        {"enabled", ret.enabled},
        {"running", ret.running},
        {"next_run_ms", ret.next_run_ms ? nlohmann::json(ret.next_run_ms) : nlohmann::json()},
        {"last_success_age_s", ret.last_success_ms
                                   ? nlohmann::json((now - ret.last_success_ms) / 1000.0)
                                   : nlohmann::json()},
        {"last_run", ret.last ? actors::retention_report_json(*ret.last) : nlohmann::json()}};
    return j.dump();
  }

  /// /readyz: which dependencies the mode (and the degraded state) needs to serve sessions.
  std::vector<api::dependency_check> readiness() {
    auto sy = sync_status->get();
    auto m = modes->snapshot();
    std::string redis_detail = redis->connected() ? "" : redis->last_error();
    if (!modes->needs_redis())
      redis_detail = (m.degraded ? "degraded: sessions are served from PostgreSQL"
                                 : "not required in mode " + cfg.sessions.mode) +
                     (redis_detail.empty() ? "" : "; " + redis_detail);
    std::string pg_detail;
    if (!modes->needs_postgres())
      pg_detail = "not required (sessions land in Redis); sync backlog " +
                  std::to_string(sy.backlog) + ", circuit " + sy.circuit;
    if (!sy.last_error.empty() && !sy.postgres_up)
      pg_detail += (pg_detail.empty() ? "" : ", ") + std::string("last error: ") + sy.last_error;
    if (m.repairs_pending > 0)
      pg_detail += (pg_detail.empty() ? "" : "; ") + std::to_string(m.repairs_pending) +
                   " sessions to put back into Redis";
    bool pg_up = modes->mode() == session_mode::postgres ? postgres_up() : sy.postgres_up;
    return {{"redis", redis->connected(), modes->needs_redis(), redis_detail},
            {"postgres", pg_up, modes->needs_postgres(), pg_detail},
            {"queues", queues->redis_up(), false, queues->readiness_detail()},
            {"cache", !cache || cache->redis_up(), false,
             cache ? cache->readiness_detail() : "cache.enabled = false"}};
  }

  /// Whether PostgreSQL answers, for modes without a sync actor to tell (postgres): checked on
  /// a pool connection, at most once a second.
  bool postgres_up() {
    auto now = std::chrono::steady_clock::now();
    std::lock_guard<std::mutex> guard{pg_probe_mtx};
    if (now - pg_probe_at > std::chrono::seconds(1)) {
      pg_probe_at = now;
      pg_pool->submit([this](postgres::client* c) {
        bool up = false;
        if (c) {
          try {
            c->exec("select 1");
            up = true;
          } catch (const postgres::pg_error&) {
            pg_probe_up.store(false);
            throw;
          }
        }
        pg_probe_up.store(up);
      });
    }
    return pg_probe_up.load();
  }

  api::api_options api_opts() {
    api::api_options o;
    o.limits.max_data_bytes = static_cast<std::size_t>(cfg.sessions.max_data_bytes);
    o.limits.max_ttl_s = cfg.sessions.max_lifetime_s;
    o.retry_after_s = cfg.sessions.retry_after_s;
    o.readiness = [this] { return readiness(); };
    o.divert = [this](messages::session_op& op,
                      std::function<void(messages::session_op &&)> to_shards) {
      return modes->divert(op, std::move(to_shards));
    };
    o.start_inline = [this](messages::session_op& op, std::size_t shard) {
      return actors::start_single(env, shard, op);
    };
    o.stats = stats;
    o.queues = queues->routes();
    if (cache)
      o.cache = cache->routes();
    o.auth = auth;
    o.status_json = [this] { return status_json(); };
    o.cluster = [this](api::answer_fn answer) {
      answer_cluster(*redis, registry_key(cfg.redis.key_prefix), cfg.redis.key_prefix, identity,
                     clock.now_ms(), std::move(answer));
    };
    o.status_page = api::status_page_html;
    o.retention_now = [this](bool dry_run, api::answer_fn answer) {
      request_retention(dry_run, std::move(answer));
    };
    if (cfg.sessions.mode != "postgres") {
      o.sync_now = [this](api::answer_fn answer) {
        request_sync([answer](messages::sync_report r) {
          if (r.ok)
            answer(200, sync_report_json(r).dump());
          else
            answer(503, "sync failed: " + r.error);
        });
      };
      o.sync_rejected = [this](api::answer_fn answer) { list_rejected(std::move(answer)); };
      o.sync_requeue = [this](api::answer_fn answer) { requeue_rejected(std::move(answer)); };
    }
    if (cfg.metrics.enabled) {
      o.metrics = std::make_shared<api::api_metrics>(*registry);
      node_meters = std::make_unique<node_metrics>(*registry, gate->shards(), cfg.sessions.mode);
      crypto_meters = std::make_unique<encryption_metrics>(*registry);
      o.metrics_text = [this] {
        node_meters->update(sample());
        crypto_meters->update(*crypto);
        return metrics::serialize(*registry);
      };
    }
    return o;
  }

  /// Stops whatever start() got to, in order: stop() after its drain and final sync, and a
  /// start() that threw once the loops ran (so the node is destroyed cleanly and the caller
  /// reports the error).
  void teardown() {
    if (supervisor)
      caf::anon_send_exit(supervisor, caf::exit_reason::user_shutdown);
    if (sample_timer)
      boost::asio::post(io, [this] { sample_timer->cancel(); });
    modes->stop();
    queues->stop();
    if (cache)
      cache->stop();
    pg_pool->stop(); // before Redis: a job may still copy a row into it
    if (redis_poll)
      redis_poll->stop();
    redis->stop();
    stop_loops();
    http.reset();
    system.await_all_actors_done();
  }

  /// SIGTERM's last step before the actors stop: write what is dirty to PostgreSQL.
  void final_sync() {
    if (cfg.sessions.mode == "postgres")
      return;
    std::promise<messages::sync_report> p;
    auto f = p.get_future();
    request_sync([&p](messages::sync_report r) { p.set_value(std::move(r)); });
    auto r = f.get();
    if (r.ok)
      log_info("final sync: " + std::to_string(r.synced) + " rows written in " +
               std::to_string(r.duration_ms) + " ms");
    else
      log_warn("final sync failed (the backlog stays in Redis for the next node): " + r.error);
  }

  node_sample sample() const {
    node_sample s;
    s.redis = redis->stats();
    s.redis_up = redis->connected();
    auto topology = redis->cluster();
    s.cluster_masters = static_cast<std::int64_t>(topology.shards.size());
    s.slots_unserved = slots_unserved(topology);
    s.redis_failures = env->counters.redis_failures.load();
    s.shard_restarts = env->counters.shard_restarts.load();
    s.router_restarts = env->counters.router_restarts.load();
    s.cas_retries = env->counters.cas_retries.load();
    s.touches = env->counters.touches.load();
    s.sync = sync_status->get();
    auto m = modes->snapshot();
    s.degraded = m.degraded;
    s.served_postgres = m.served_postgres;
    s.mirror_failures = m.mirror_failures;
    s.put_back = m.put_back;
    s.put_back_pending = m.repairs_pending;
    s.mode_conflicts = mode_conflicts.load();
    for (std::size_t i = 0; i < gate->shards(); ++i)
      s.in_flight.push_back(gate->in_flight(i));
    return s;
  }
};

std::vector<std::string> migrate(const config::config& cfg) {
  try {
    postgres::client c(postgres_options(cfg));
    postgres::create_schema(c, cfg.postgres.schema);
    return postgres::apply_migrations(c, postgres::embedded_migrations());
  } catch (const postgres::pg_error& e) {
    throw std::runtime_error(e.what());
  }
}

node::node(config::config cfg, const model::clock& clock)
    : impl_(std::make_unique<impl>(std::move(cfg), clock)) {}

node::~node() {
  stop();
}

std::uint16_t node::start() {
  auto& d = *impl_;
  set_log_level(d.cfg.node.log_level);
  d.auth = make_auth_gate(d.cfg, *d.registry); // a bad tokens file stops start-up before anything
  load_keys(d.cfg.encryption, *d.crypto);      // so does a bad keys file
  d.redis = std::make_unique<redis::client>(d.loop_ptrs(), redis_options(d.cfg));
  d.make_env();
  d.make_modes();
  d.redis->on_state_change([m = d.modes.get()](bool up) {
    up ? log_info("redis: connected") : log_warn("redis: unreachable");
    m->wake();
  });
  d.migrate();
  d.routes = std::make_shared<api::route_table>(static_cast<std::size_t>(d.cfg.sessions.shards));
  d.gate = std::make_shared<api::shard_gate>(static_cast<std::size_t>(d.cfg.sessions.shards),
                                             d.cfg.sessions.max_in_flight);
  d.make_sync();
  d.make_retention();
  d.queues = std::make_unique<queue_service>(queue_deps{
      &d.cfg, d.redis.get(), d.loop_ptrs(), &d.clock, d.registry.get(), &d.crypto->keys});
  if (d.cfg.cache.enabled)
    d.cache = std::make_unique<cache_service>(cache_deps{
        &d.cfg, d.redis.get(), d.loop_ptrs(), &d.clock, d.registry.get(), &d.crypto->keys});
  d.http = std::make_unique<http::server>(d.loop_ptrs(), http_options(d.cfg),
                                          api::routes(d.api_opts(), d.routes, d.gate));
  d.port = d.http->bind(); // a port in use fails here, before any thread or actor runs; clients
                           // are refused until http->start() listens
  d.redis->start();
  d.queues->start_client();
  if (d.cache)
    d.cache->start_client();
  d.run_loops();
  try {
    d.wait_for_redis();
    d.queues->check_redis();
    if (d.cache)
      d.cache->check_loaders();
    if (d.redis->connected())
      d.check_other_nodes();
    else
      log_warn("mode " + d.cfg.sessions.mode +
               ": Redis unreachable at start; the modes of other nodes are checked once it is up");
    d.sync_backlog_first(); // before the sync actor exists: one engine, one runner at a time
    d.spawn_supervisor();
    // The supervisor spawns the shards and the router on the scheduler; requests must not find
    // an empty route (503) just because the node answered before they ran. Bounded: a shard that
    // cannot start is the supervisor's to report.
    for (int i = 0; i < 500; ++i) {
      bool all = static_cast<bool>(d.routes->router());
      for (std::size_t s = 0; all && s < d.routes->shards(); ++s)
        all = static_cast<bool>(d.routes->shard(s));
      if (all)
        break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    d.modes->start();
    d.redis_poll = std::make_unique<redis_poller>(
        d.io, *d.redis, d.redis_info, std::chrono::milliseconds(d.cfg.metrics.redis_poll_ms));
    d.redis_poll->start();
    d.sample_timer = std::make_unique<boost::asio::steady_timer>(d.io);
    boost::asio::post(d.io, [&d] { d.sample_ops(); });
    d.http->start();
  } catch (...) {
    d.leave_registry(); // its entry, if written, would hold other nodes back for nothing
    d.teardown();
    throw;
  }
  d.started = true;
  return d.port;
}

void node::stop() {
  auto& d = *impl_;
  if (!d.started || d.stopped)
    return;
  d.stopped = true;
  d.http->stop_accepting();
  d.queues->drain(d.system); // parked leases answer now; running jobs finish or go back
  auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(d.cfg.http.drain_timeout_ms);
  while (d.http->in_flight() > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  d.retention_opts->stop->store(true); // a run in progress ends after its current batch
  d.final_sync();
  d.leave_registry();
  d.teardown();
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

bool node::reload_auth() {
  auto& d = *impl_;
  if (!d.auth) {
    log_info("auth: no tokens file is set; nothing to re-read");
    return false;
  }
  return reload_tokens(d.cfg.auth, *d.auth);
}

bool node::reload_encryption() {
  auto& d = *impl_;
  return reload_keys(d.cfg.encryption, *d.crypto);
}

caf::actor_system& node::system() {
  return impl_->system;
}

messages::router_actor node::router() const {
  return impl_->routes->router();
}

messages::sync_actor node::sync() const {
  return impl_->sync_handle();
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
