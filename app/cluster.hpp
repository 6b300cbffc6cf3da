// The cluster view behind GET /v1/cluster and the status page's Cluster table: the sessiond
// nodes that share this Redis (id, mode, address, version, last seen) and the Redis topology
// the node's client follows (masters, replicas, slot ranges, link state, redirects).
#pragma once

#include "adapters/redis/client.hpp"

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace sessiond::app {

/// What a node says of itself besides its mode: kept in `P{nodes}info` (field: node id, value:
/// the JSON {"address", "version", "started_ms"}) next to the mode registry, so nodes of an
/// older version, which read only the registry, are not confused by it.
struct node_identity {
  std::string id;
  std::string address; ///< http.listen as configured
  std::string version;
  std::int64_t started_ms = 0;
};

/// The sync work a node reports with its identity (refreshed with its registry entry): which
/// sync partitions it drained in its last successful run and which leases it holds right now.
struct sync_activity {
  bool enabled = false;              ///< this node runs the sync (sessions.mode has one)
  std::vector<std::size_t> last_run; ///< partitions the last successful run drained, sorted
  std::int64_t last_run_ms = 0;      ///< wall time of that run; 0 never
  std::vector<std::size_t> holding;  ///< partitions whose lease is held now, sorted
};

std::string node_info_key(const std::string& key_prefix);
std::string node_info_value(const node_identity& self, const sync_activity& sync = {});

/// Sorted numbers as [first, last] ranges: {1, 2, 3, 7} → [[1, 3], [7, 7]].
nlohmann::json ranges_json(const std::vector<std::size_t>& sorted);

/// The "redis" member of GET /v1/cluster and /v1/status: {"cluster": bool, "masters": [...],
/// "topology_age_ms", "redirects": {"moved", "ask"}, "retries", "refreshes"}.
nlohmann::json redis_topology_json(const redis::client& redis);

/// Slots whose master has no connection up, or that no master serves; 0 for a single Redis.
std::int64_t slots_unserved(const redis::cluster_view& view);

/// Reads the registry and the info hash, then answers (200 and the JSON of GET /v1/cluster, or
/// 503 when Redis does not answer). `registry_key` is the mode registry's key.
void answer_cluster(redis::client& redis, const std::string& registry_key,
                    const std::string& key_prefix, const node_identity& self, std::int64_t now_ms,
                    std::function<void(unsigned status, std::string json)> answer);

} // namespace sessiond::app
