// Node-level metrics (see node_metrics.hpp).
#include "app/node_metrics.hpp"

#include "adapters/metrics/helpers.hpp"
#include "adapters/metrics/metric.hpp"

#include <string>

namespace sessiond::app {

namespace {

using metrics::add_gauge;

metrics::Counter* counter(metrics::Registry& r, const char* name, const char* help) {
  return &metrics::add_counter(r, name, help);
}

} // namespace

node_metrics::node_metrics(metrics::Registry& r, std::size_t shards, const std::string& mode)
    : process_(r),
      redis_up_(add_gauge(r, "sessiond_redis_up", "1 when at least one Redis connection is up.")),
      redis_connections_(add_gauge(r, "sessiond_redis_connections", "Redis connections up.")),
      redis_commands_{counter(r, "sessiond_redis_commands_total", "Redis commands sent.")},
      redis_errors_{counter(r, "sessiond_redis_command_errors_total",
                            "Redis commands failed by the transport (down, timeout, protocol).")},
      redis_reconnects_{counter(r, "sessiond_redis_reconnects_total", "Redis reconnections.")},
      op_failures_{counter(r, "sessiond_session_redis_failures_total",
                           "Session operations answered 503 because Redis failed.")},
      shard_restarts_{counter(r, "sessiond_shard_restarts_total",
                              "session_shard actors restarted by the supervisor.")},
      router_restarts_{counter(r, "sessiond_router_restarts_total",
                               "session_router actors restarted by the supervisor.")},
      cas_retries_{counter(r, "sessiond_session_cas_retries_total",
                           "PATCHes merged again because another node wrote first.")},
      touches_{counter(r, "sessiond_session_touches_total", "Idle-TTL slides sent by reads.")},
      sync_backlog_(add_gauge(r, "sessiond_sync_backlog",
                              "Sessions marked dirty in Redis, waiting for a sync (-1: unknown).")),
      sync_rejected_(add_gauge(r, "sessiond_sync_rejected",
                               "Sessions PostgreSQL refused, set aside in the rejected hash "
                               "until saved again or requeued (-1: unknown).")),
      sync_last_success_(add_gauge(r, "sessiond_sync_last_success_timestamp_seconds",
                                   "Unix time of the last successful sync run (0: none yet).")),
      sync_circuit_open_(add_gauge(r, "sessiond_sync_circuit_open",
                                   "1 while the sync circuit breaker holds attempts back.")),
      postgres_up_(
          add_gauge(r, "sessiond_postgres_up", "1 when the last PostgreSQL contact worked.")),
      degraded_(add_gauge(r, "sessiond_degraded",
                          "1 while sessions are served from PostgreSQL because Redis is down.")),
      sync_runs_{counter(r, "sessiond_sync_runs_total", "Sync runs finished.")},
      sync_failures_{counter(r, "sessiond_sync_failures_total", "Sync runs that failed.")},
      sync_rows_{counter(r, "sessiond_sync_rows_written_total",
                         "Session rows inserted or replaced in PostgreSQL by sync.")},
      sync_rejected_rows_{counter(r, "sessiond_sync_rejected_rows_total",
                                  "Session rows PostgreSQL refused (a data error or a "
                                  "constraint), set aside in the rejected hash.")},
      served_postgres_{counter(r, "sessiond_sessions_served_postgres_total",
                               "Session operations answered from PostgreSQL (its modes, or "
                               "degraded while Redis is down).")},
      mirror_failures_{counter(r, "sessiond_sessions_mirror_failures_total",
                               "Rows written in PostgreSQL first whose copy into Redis failed "
                               "(noted for put-back).")},
      put_back_{counter(r, "sessiond_sessions_put_back_total",
                        "Sessions written in PostgreSQL while Redis was down, put back into it.")},
      put_back_pending_(add_gauge(r, "sessiond_sessions_put_back_pending",
                                  "Sessions still to be put back into Redis (-1: unknown).")),
      mode_conflicts_(add_gauge(r, "sessiond_mode_conflicts",
                                "Live nodes (same Redis and key prefix) whose sessions.mode "
                                "cannot run beside this node's.")),
      cluster_moved_{&metrics::add_counter(r, "sessiond_redis_cluster_redirects_total",
                                           "Redis Cluster redirects followed, by kind (MOVED: the "
                                           "slot moved; ASK: the slot is being moved).",
                                           {{"kind", "moved"}})},
      cluster_ask_{&metrics::add_counter(r, "sessiond_redis_cluster_redirects_total",
                                         "Redis Cluster redirects followed, by kind (MOVED: the "
                                         "slot moved; ASK: the slot is being moved).",
                                         {{"kind", "ask"}})},
      cluster_retries_{counter(r, "sessiond_redis_cluster_retries_total",
                               "Redis Cluster commands sent again after TRYAGAIN or CLUSTERDOWN, "
                               "or held while a new master's connection came up.")},
      cluster_refreshes_{counter(r, "sessiond_redis_cluster_topology_refreshes_total",
                                 "Redis Cluster topology reads (CLUSTER SHARDS) that succeeded.")},
      cluster_masters_(add_gauge(r, "sessiond_redis_cluster_masters",
                                 "Redis Cluster masters the node routes to (0: a single Redis).")),
      slots_unserved_(add_gauge(r, "sessiond_redis_cluster_slots_unserved",
                                "Redis Cluster slots whose master has no connection up: their "
                                "requests answer 503 until a failover or reconnect.")),
      sync_duration_(
          metrics::BuildHistogram()
              .Name("sessiond_sync_duration_seconds")
              .Help("Duration of one sync run.")
              .Register(r)
              .Add({}, metrics::Histogram::BucketBoundaries{0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                            0.5, 1, 2.5, 5, 10, 30, 60})) {
  metrics::BuildGauge()
      .Name("sessiond_mode_info")
      .Help("The node's sessions.mode, as a label (value 1).")
      .Register(r)
      .Add({{"mode", mode}})
      .Set(1);
  auto& fam = metrics::BuildGauge()
                  .Name("sessiond_shard_in_flight")
                  .Help("Session operations in flight per shard (limit: sessions.max_in_flight).")
                  .Register(r);
  for (std::size_t i = 0; i < shards; ++i)
    in_flight_.push_back(&fam.Add({{"shard", std::to_string(i)}}));
}

void node_metrics::update(const node_sample& s) {
  std::lock_guard<std::mutex> guard{mtx_};
  process_.update();
  redis_up_.Set(s.redis_up ? 1 : 0);
  redis_connections_.Set(static_cast<double>(s.redis.connections_up));
  redis_commands_.advance(s.redis.commands);
  redis_errors_.advance(s.redis.errors);
  redis_reconnects_.advance(s.redis.reconnects);
  cluster_moved_.advance(s.redis.moved);
  cluster_ask_.advance(s.redis.asked);
  cluster_retries_.advance(s.redis.retried);
  cluster_refreshes_.advance(s.redis.refreshes);
  cluster_masters_.Set(static_cast<double>(s.cluster_masters));
  slots_unserved_.Set(static_cast<double>(s.slots_unserved));
  op_failures_.advance(s.redis_failures);
  shard_restarts_.advance(s.shard_restarts);
  router_restarts_.advance(s.router_restarts);
  cas_retries_.advance(s.cas_retries);
  touches_.advance(s.touches);
  for (std::size_t i = 0; i < in_flight_.size() && i < s.in_flight.size(); ++i)
    in_flight_[i]->Set(static_cast<double>(s.in_flight[i]));
  sync_backlog_.Set(static_cast<double>(s.sync.backlog));
  sync_rejected_.Set(static_cast<double>(s.sync.rejected));
  sync_last_success_.Set(static_cast<double>(s.sync.last_success_ms) / 1000.0);
  sync_circuit_open_.Set(s.sync.circuit == "closed" ? 0 : 1);
  postgres_up_.Set(s.sync.postgres_up ? 1 : 0);
  degraded_.Set(s.degraded ? 1 : 0);
  mode_conflicts_.Set(static_cast<double>(s.mode_conflicts));
  sync_runs_.advance(s.sync.runs);
  sync_failures_.advance(s.sync.failures);
  sync_rows_.advance(s.sync.rows_written);
  sync_rejected_rows_.advance(s.sync.rejected_total);
  served_postgres_.advance(s.served_postgres);
  mirror_failures_.advance(s.mirror_failures);
  put_back_.advance(s.put_back);
  put_back_pending_.Set(static_cast<double>(s.put_back_pending));
}

void node_metrics::observe_sync(const messages::sync_report& r) {
  sync_duration_.Observe(static_cast<double>(r.duration_ms) / 1000.0);
}

} // namespace sessiond::app
