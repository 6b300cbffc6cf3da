// Node-level metrics (see node_metrics.hpp).
#include "app/node_metrics.hpp"

#include "adapters/metrics/metric.hpp"

#include <string>

namespace sessiond::app {

namespace {

metrics::Counter* counter(metrics::Registry& r, const char* name, const char* help) {
  return &metrics::BuildCounter().Name(name).Help(help).Register(r).Add({});
}

metrics::Gauge& gauge(metrics::Registry& r, const char* name, const char* help) {
  return metrics::BuildGauge().Name(name).Help(help).Register(r).Add({});
}

} // namespace

void node_metrics::follower::advance(std::uint64_t now) {
  if (now > last)
    counter->Increment(static_cast<double>(now - last));
  last = now;
}

node_metrics::node_metrics(metrics::Registry& r, std::size_t shards)
    : process_(r),
      redis_up_(gauge(r, "sessiond_redis_up", "1 when at least one Redis connection is up.")),
      redis_connections_(gauge(r, "sessiond_redis_connections", "Redis connections up.")),
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
      touches_{counter(r, "sessiond_session_touches_total", "Idle-TTL slides sent by reads.")} {
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
  op_failures_.advance(s.redis_failures);
  shard_restarts_.advance(s.shard_restarts);
  router_restarts_.advance(s.router_restarts);
  cas_retries_.advance(s.cas_retries);
  touches_.advance(s.touches);
  for (std::size_t i = 0; i < in_flight_.size() && i < s.in_flight.size(); ++i)
    in_flight_[i]->Set(static_cast<double>(s.in_flight[i]));
}

} // namespace sessiond::app
