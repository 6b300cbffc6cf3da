// queue_worker: runs one job at a time for its queue_manager with a built-in handler (noop, or
// a webhook call), and reports the outcome to it (see messages/queue.hpp).
#pragma once

#include "actors/queue/queue_env.hpp"
#include "messages/queue.hpp"

#include <memory>
#include <optional>

namespace sessiond::actors {

struct queue_worker_state {
  std::shared_ptr<const queue_env> env;
  messages::queue_manager_actor manager;
  std::optional<messages::run_job> current;
  static inline const char* name = "queue_worker";
};

messages::queue_worker_actor::behavior_type
queue_worker(messages::queue_worker_actor::stateful_pointer<queue_worker_state> self,
             std::shared_ptr<const queue_env> env, messages::queue_manager_actor manager);

/// What a webhook's answer means for its job: 2xx completes (a JSON body is the result), 408,
/// 429 and 5xx retry and count against the type's circuit, other 4xx fail it for good; no answer
/// (timeout, refused, reset) retries and counts against the circuit.
messages::job_done webhook_outcome(const messages::run_job& job, const messages::webhook_done& w,
                                   std::size_t max_result_bytes);

} // namespace sessiond::actors
