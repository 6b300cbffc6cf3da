// queue_keeper: the queues' clocks on one node (see messages/queue.hpp). Every queue it knows (the
// configured ones and every name in P{queues}) gets its tick script at the queue's next due
// time, expiry or trim, and at least every queues.maintenance_interval_ms; promotions and expired
// leases wake the queue's waiters. It counts each queue for the gauges and /v1/status, reads the
// queue Redis' memory for the enqueue backpressure, and enqueues the recurring jobs, once per
// period across every node (the period number is the fence, checked in the enqueue script).
#pragma once

#include "actors/queue/queue_env.hpp"
#include "messages/queue.hpp"

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace sessiond::actors {

struct keeper_queue {
  queue::queue_policy policy;
  std::int64_t next_tick_ms = 0;
  std::int64_t next_count_ms = 0;
  std::int64_t hinted_ms = INT64_MAX; ///< delayed jobs enqueued here fall due then
  bool ticking = false;
  bool counting = false;
};

struct keeper_schedule {
  config::queue_schedule cfg;
  std::int64_t at_minute = 0;           ///< of a daily `at`
  std::int64_t done_period = INT64_MIN; ///< the last period enqueued (by any node)
  std::int64_t retry_at_ms = 0;         ///< after a failed enqueue
  bool sending = false;
};

struct queue_keeper_state {
  std::shared_ptr<const queue_env> env;
  std::map<std::string, keeper_queue> queues;
  std::vector<keeper_schedule> schedules;
  std::int64_t next_names_ms = 0;
  std::int64_t next_memory_ms = 0;
  bool naming = false;
  bool reading_memory = false;
  std::string policy_seen;      ///< the maxmemory-policy last logged
  std::uint64_t generation = 0; ///< only the newest tick chain runs
  std::int64_t planned_ms = 0;  ///< when the newest tick is due
  static inline const char* name = "queue_keeper";
};

messages::queue_keeper_actor::behavior_type
queue_keeper(messages::queue_keeper_actor::stateful_pointer<queue_keeper_state> self,
             std::shared_ptr<const queue_env> env);

/// used_memory, maxmemory and maxmemory_policy from the text of INFO memory.
queue_memory parse_memory(const std::string& info);

/// Minutes after midnight of "HH:MM" (the format config checked).
std::int64_t minute_of_day(const std::string& hh_mm);

} // namespace sessiond::actors
