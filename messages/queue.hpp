// The job queue's actors: a queue_manager per queue with built-in handlers leases jobs for the
// free slots of its pool of queue_worker actors and reports their outcomes in batches; one
// queue_keeper per node runs the queues' clocks (delayed jobs, expired leases, finished jobs'
// age, recurring jobs) and counts them.
#pragma once

#include "adapters/queue/store.hpp"

#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/atom.hpp>
#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace sessiond::messages {

using queue_wake_atom = caf::atom_constant<caf::atom("qwake")>;
using queue_lease_atom = caf::atom_constant<caf::atom("qlease")>;
using queue_extend_atom = caf::atom_constant<caf::atom("qextend")>;
using queue_flush_atom = caf::atom_constant<caf::atom("qflush")>;
using queue_drain_atom = caf::atom_constant<caf::atom("qdrain")>;
using queue_drained_atom = caf::atom_constant<caf::atom("qdrained")>;
using keeper_tick_atom = caf::atom_constant<caf::atom("ktick")>;

/// How a job type runs on the built-in workers.
struct job_handler {
  enum class kind { noop, webhook } what = kind::noop;
  std::string url;
  std::int64_t timeout_ms = 10000;
};

/// A leased job handed to a worker.
struct run_job {
  std::string queue;
  queue::leased_job job;
  job_handler handler;
};

/// A worker's outcome for one job: kind 'c' complete (value: result JSON or empty), 'f' fail
/// with retry, 'F' fail for good (value: the error). `downstream_failed` counts against the
/// type's circuit (5xx, timeouts, connection errors), a 4xx does not.
struct job_done {
  std::string id;
  std::string token;
  char kind = 'c';
  std::string value;
  bool downstream_failed = false;
};

/// A webhook's answer coming back to the worker that called it.
struct webhook_done {
  std::string id;
  unsigned status = 0; ///< 0: no HTTP answer (see error)
  std::string error;   ///< transport failure, when status is 0
  std::string body;
  std::string content_type;
};

/// Replies from Redis, back to the actor that sent the command.
struct leased_msg {
  std::string types_key; ///< which lease call this answers ("" the main one, else a probe's type)
  queue::lease_result result;
};
struct finished_msg {
  std::vector<queue::finish_entry> entries;
  queue::finish_result result;
};
struct extended_msg {
  std::vector<std::string> ids;
  queue::extend_result result;
};
struct released_msg {
  std::int64_t released = 0;
  std::string error;
};
struct tick_done {
  std::string queue;
  queue::tick_result result;
};
struct counts_done {
  std::string queue;
  queue::queue_counts counts;
};
struct names_done {
  std::vector<std::string> names;
};
struct memory_done {
  std::string info; ///< INFO memory text; empty when Redis did not answer
};
/// The API enqueued delayed jobs due at `due_ms`: the keeper promotes them on time.
struct due_hint {
  std::string queue;
  std::int64_t due_ms = 0;
};
struct schedule_done {
  std::size_t index = 0;
  std::int64_t period = 0;
  queue::enqueue_result result;
};

/// Runs one job at a time for its manager (the built-in handlers: noop, webhook).
using queue_worker_actor = caf::typed_actor<
    // Run this job and report a job_done to the manager.
    caf::reacts_to<run_job>,
    // The webhook call of the current job answered (or failed).
    caf::reacts_to<webhook_done>>;

/// Leases jobs of one queue for its workers' free slots and reports their outcomes.
using queue_manager_actor = caf::typed_actor<
    // Jobs may be waiting (a local enqueue, a resume, another node's enqueue seen): lease.
    caf::reacts_to<queue_wake_atom>,
    // Own timer: lease if slots are free (after a backoff or a circuit's cooldown).
    caf::reacts_to<queue_lease_atom>, caf::reacts_to<leased_msg>,
    // A worker finished a job.
    caf::reacts_to<job_done>,
    // Own timer: report what is pending again after Redis failed.
    caf::reacts_to<queue_flush_atom>, caf::reacts_to<finished_msg>,
    // Own timer: extend the leases of jobs still running.
    caf::reacts_to<queue_extend_atom>, caf::reacts_to<extended_msg>, caf::reacts_to<released_msg>,
    // SIGTERM: stop leasing, let running jobs finish up to queues.shutdown_grace_ms, give the
    // rest back (attempt not counted); answers how many were given back.
    caf::replies_to<queue_drain_atom>::with<std::int64_t>,
    // Own timer: the drain's grace is over.
    caf::reacts_to<queue_drained_atom>>;

/// The queues' clocks on this node: promotion of due delayed jobs, expired leases, finished
/// jobs' age, recurring jobs, counts for metrics and status, Redis memory for backpressure.
using queue_keeper_actor =
    caf::typed_actor<caf::reacts_to<keeper_tick_atom, std::uint64_t>, caf::reacts_to<tick_done>,
                     caf::reacts_to<counts_done>, caf::reacts_to<names_done>,
                     caf::reacts_to<memory_done>, caf::reacts_to<due_hint>,
                     caf::reacts_to<schedule_done>>;

} // namespace sessiond::messages

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(sessiond::messages::run_job)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(sessiond::messages::job_done)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(sessiond::messages::webhook_done)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(sessiond::messages::leased_msg)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(sessiond::messages::finished_msg)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(sessiond::messages::extended_msg)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(sessiond::messages::released_msg)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(sessiond::messages::tick_done)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(sessiond::messages::counts_done)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(sessiond::messages::names_done)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(sessiond::messages::memory_done)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(sessiond::messages::due_hint)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(sessiond::messages::schedule_done)
