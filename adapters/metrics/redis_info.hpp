// Redis's own health as sessiond_redis_* metrics: parses the text of `INFO` and the pairs of
// `CONFIG GET maxmemory*`, classifies the eviction policy, and updates a registry. No I/O.
#pragma once

#include "adapters/metrics/helpers.hpp"
#include "adapters/metrics/process_metrics.hpp" // errc
#include "adapters/metrics/registry.hpp"

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sessiond::metrics {

/// One `dbN:keys=…,expires=…` line of INFO keyspace.
struct keyspace_stats {
  std::uint64_t keys = 0;
  std::uint64_t expires = 0; ///< keys carrying a TTL
};

/// One command of INFO commandstats; Redis 7's subcommand lines (`script|load`) are summed
/// under their command (`script`).
struct command_stats {
  std::uint64_t calls = 0;
  std::uint64_t usec = 0; ///< time Redis spent executing them, microseconds
};

/// What sessiond reads from INFO. Fields missing from the text keep their defaults.
struct redis_info {
  std::string run_id; ///< changes when Redis restarts (its counters restart at 0 then)
  std::string redis_version;
  std::uint64_t used_memory = 0;
  std::optional<std::uint64_t> maxmemory; ///< 0 = no limit; absent when INFO lacks the field
  std::string maxmemory_policy;           ///< empty when unknown
  std::uint64_t evicted_keys = 0;
  std::uint64_t expired_keys = 0;
  std::uint64_t total_commands_processed = 0;
  double instantaneous_ops_per_sec = 0;
  std::uint64_t connected_clients = 0;
  std::uint64_t blocked_clients = 0;
  std::map<std::string, keyspace_stats> keyspace; ///< "db0" → counts
  std::map<std::string, command_stats> commands;  ///< tracked_command() names only
};

/// Parses an INFO reply (any sections, `\r\n` or `\n` line ends). Unknown fields and sections
/// are ignored. errc::malformed, with `out` partly filled, when a field sessiond reads is not a
/// number or when `used_memory`, `evicted_keys` or `connected_clients` (one per section
/// polled) is missing.
errc parse_info(std::string_view text, redis_info& out);

/// The flat name, value, name, value… array of `CONFIG GET pattern` as a map. errc::malformed
/// when the count is odd.
errc parse_config_get(const std::vector<std::string>& flat,
                      std::map<std::string, std::string>& out);

/// Fills the maxmemory limit and policy from CONFIG GET where INFO lacked them (Redis before
/// 3.2 had neither in INFO memory). errc::malformed when the maxmemory value is not a number.
errc apply_config(const std::map<std::string, std::string>& config, redis_info& out);

/// Whether `name` (lower case, no subcommand) is one whose commandstats become metrics: the
/// commands sessiond itself sends, directly or from its Lua scripts. A fixed list, so the
/// `cmd` label has a bounded set of values whatever else runs on that Redis.
bool tracked_command(std::string_view name);

/// What a maxmemory-policy may evict once Redis is full.
enum class eviction_risk {
  none,          ///< noeviction: writes fail with OOM instead (sessiond answers 503)
  keys_with_ttl, ///< volatile-*: only keys with a TTL, i.e. sessions and user indexes
  any_key,       ///< allkeys-* and any policy this build does not know
  unknown,       ///< the policy could not be read
};
eviction_risk classify_policy(std::string_view policy);

/// True when the policy may evict keys that carry no TTL: dirty sets (writes not yet in
/// PostgreSQL) and queues. That is the start-up warning of the issue: anything but
/// `noeviction` or `volatile-*` (every session key carries a TTL). volatile-* is not "unsafe"
/// by that rule, but it may still evict a session before its TTL, so eviction_warning() warns
/// about it as well; see docs/metrics.md.
bool eviction_unsafe(std::string_view policy);

/// The WARN line for a policy that may evict sessiond's keys, naming the setting to use
/// (`maxmemory-policy noeviction`); empty for noeviction and an unknown policy.
std::string eviction_warning(std::string_view policy);

/// The latest figures, for /v1/status.
struct redis_info_snapshot {
  bool valid = false; ///< false until the first successful poll
  std::uint64_t used_memory_bytes = 0;
  std::uint64_t maxmemory_bytes = 0; ///< 0 = no limit
  double memory_ratio = 0;           ///< used / max; 0 without a limit
  std::string maxmemory_policy;      ///< empty when unknown
  bool eviction_unsafe = false;
  std::uint64_t evicted_keys = 0; ///< as sessiond_redis_evicted_keys_total
  double ops_per_s = 0;
  std::uint64_t connected_clients = 0;
  std::chrono::system_clock::time_point polled_at{}; ///< time of the last successful poll
  std::uint64_t poll_errors = 0;
};

/// The sessiond_redis_* metrics of INFO, registered on construction (see docs/metrics.md for
/// the list). Counters that mirror Redis's cumulative values advance by the difference since
/// the last update, or by the whole new value after Redis restarted (a new run_id) or reset
/// its statistics (a value that went down), so they never go down. Thread-safe: update(),
/// poll_failed() and latest() are serialized by one mutex.
class redis_info_metrics {
public:
  explicit redis_info_metrics(Registry& registry);

  /// Applies one successful poll taken at `now`.
  void update(const redis_info& info, std::chrono::system_clock::time_point now);
  /// Counts a poll that failed (transport error, error reply, unparsable text).
  void poll_failed();
  redis_info_snapshot latest() const;

private:
  using follower = counter_follower; ///< follows a cumulative value Redis keeps
  struct keyspace_gauges {
    Gauge* keys;
    Gauge* expires;
  };
  struct command_followers {
    follower calls;
    follower usec;
  };

  void update_keyspace(const redis_info& info);
  void update_commands(const redis_info& info, bool restarted);
  void update_policy(const std::string& policy);

  mutable std::mutex mtx_;
  Gauge& used_;
  Gauge& max_;
  Gauge& ratio_;
  Gauge& connected_;
  Gauge& blocked_;
  Gauge& unsafe_;
  Gauge& ops_;
  follower evicted_, expired_, commands_;
  Counter& poll_errors_;
  Family<Gauge>& keys_family_;
  Family<Gauge>& expires_family_;
  Family<Gauge>& policy_family_;
  Family<Counter>& calls_family_;
  Family<Counter>& duration_family_;
  std::map<std::string, keyspace_gauges> keyspace_;
  std::map<std::string, command_followers> command_;
  Gauge* policy_ = nullptr; ///< the series of policy_name_, if any
  std::string policy_name_;
  std::string run_id_;
  bool first_ = true;
  redis_info_snapshot snapshot_;
};

} // namespace sessiond::metrics
