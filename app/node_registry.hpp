// Which nodes share this Redis and in which sessions.mode: each node keeps its entry in the hash
// `P nodes` (field: node id, value: "<mode> <seen_ms>") fresh, and a node about to start looks
// there for live nodes in a mode that cannot run next to its own. Nodes in different modes write
// versions on two sides that do not see each other (a redis-read node's PostgreSQL-first write
// under a redis-primary node's newer unsynced one is lost when the sync writes that one), so
// sessions.mixed_modes = "refuse" (the default) stops such a start with the reason. Pure logic
// here; the node does the Redis calls (app/node.cpp).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sessiond::app {

/// How often a node writes its entry, and how long an entry counts as a live node after that.
constexpr std::int64_t registry_refresh_ms = 5000;
constexpr std::int64_t registry_live_ms = 15000;
/// Entries older than this (nodes killed without removing theirs) are deleted by whoever sees
/// them.
constexpr std::int64_t registry_forget_ms = 3600000;

/// The hash of node entries under the key prefix.
inline std::string registry_key(const std::string& prefix) {
  return prefix + "nodes";
}

/// An entry's value: "<mode> <seen_ms>".
std::string registry_value(std::string_view mode, std::int64_t now_ms);

/// True when nodes in modes `a` and `b` can serve the same sessions at once: the same mode, or
/// shadow next to redis-read (both write PostgreSQL first and copy every write into Redis).
bool modes_compatible(std::string_view a, std::string_view b);

struct peer {
  std::string node_id;
  std::string mode;
  std::int64_t seen_ms = 0;
};

struct registry_view {
  std::vector<peer> conflicting;  ///< live nodes (not `self`) in a mode incompatible with ours
  std::vector<std::string> stale; ///< entries past registry_forget_ms, or unreadable: to delete
};

/// Reads an HGETALL reply's (field, value) pairs as the view of node `self_id` in `mode` at
/// `now_ms`.
registry_view read_registry(const std::vector<std::pair<std::string, std::string>>& entries,
                            std::string_view self_id, std::string_view mode, std::int64_t now_ms);

/// One line naming the conflicting nodes, their modes and how long ago each was seen, and what
/// to do: "sessions.mode = redis-primary cannot run next to live nodes in other modes: a
/// (redis-read, seen 2 s ago), …; …". `starting`: said by a node about to start (stop them, or
/// start anyway with "warn"), else by a running one (stop the nodes in the mode not meant).
std::string conflict_message(std::string_view mode, const std::vector<peer>& conflicting,
                             std::int64_t now_ms, bool starting);

} // namespace sessiond::app
