// queue_manager: the built-in worker pool of one queue (see messages/queue.hpp). It leases jobs
// of the types it has handlers for, only for free slots and in batches (one script leases many),
// hands them to its queue_worker actors, reports their outcomes in batches (one report in
// flight, the next batch gathered meanwhile), extends the leases of jobs still running, and stops
// leasing a type whose handler keeps failing (its circuit) until a probe succeeds.
#pragma once

#include "actors/queue/queue_env.hpp"
#include "messages/queue.hpp"
#include "model/queue.hpp"

#include <caf/fwd.hpp>
#include <caf/typed_response_promise.hpp>

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace sessiond::actors {

struct running_job {
  queue::leased_job job;
  messages::queue_worker_actor worker;
  std::int64_t lease_ms = 0; ///< how long each lease (and extension) lasts
  bool reported = false;     ///< its outcome is in `pending` or being reported
};

struct queue_manager_state {
  std::string queue;
  std::shared_ptr<const queue_env> env;
  queue::queue_policy policy;
  std::int64_t concurrency = 0;
  std::map<std::string, messages::job_handler> handlers; ///< by job type (noop, webhook)
  std::map<std::string, model::type_circuit> circuits;
  std::vector<messages::queue_worker_actor> workers; ///< every worker, for supervision
  std::vector<messages::queue_worker_actor> idle;
  /// Leased and not yet reported to Redis: running on a worker, or done with its outcome in
  /// `pending` or in the report on its way.
  std::map<std::string, running_job> running;
  std::int64_t busy = 0; ///< of `running`, the jobs still running on a worker
  std::vector<queue::finish_entry> pending;   ///< outcomes not yet sent
  int leasing = 0;                            ///< lease calls out
  bool flushing = false;                      ///< a report is out
  bool starved = false; ///< the last lease found fewer jobs than asked: wait for a wake
  bool parked = false;  ///< waiting in lease_waiters for a wake
  bool extend_armed = false;
  std::int64_t redis_failures = 0; ///< in a row, for the backoff of leases and reports
  bool draining = false;
  std::vector<caf::typed_response_promise<std::int64_t>> drains;
  static inline const char* name = "queue_manager";
};

messages::queue_manager_actor::behavior_type
queue_manager(messages::queue_manager_actor::stateful_pointer<queue_manager_state> self,
              std::string queue, std::shared_ptr<const queue_env> env);

/// The built-in handlers of a queue's configuration (noop and webhook types; pull types have
/// none): empty when the queue needs no manager.
std::map<std::string, messages::job_handler> built_in_handlers(const config::queue_settings& s);

} // namespace sessiond::actors
