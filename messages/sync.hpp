// The sync actor's interface: it writes the sessions marked dirty in Redis to PostgreSQL, in
// batches, every sync.interval_ms, when the backlog passes sync.max_dirty, and on request.
#pragma once

#include "messages/published.hpp"

#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/atom.hpp>
#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace sessiond::messages {

using sync_now_atom = caf::atom_constant<caf::atom("syncnow")>;
using sync_tick_atom = caf::atom_constant<caf::atom("synctick")>;

/// The outcome of one sync run.
struct sync_report {
  bool ok = false;
  std::uint64_t synced = 0;       ///< rows written to PostgreSQL
  std::uint64_t read = 0;         ///< dirty sessions read from Redis
  std::uint64_t repaired = 0;     ///< sessions moved past a higher PostgreSQL version
  std::uint64_t skipped_sets = 0; ///< dirty sets another node was syncing
  std::uint64_t rejected = 0;     ///< sessions PostgreSQL refused, moved to the rejected hash
  std::int64_t duration_ms = 0;
  std::vector<std::size_t> partitions; ///< the sync partitions this run drained, sorted
  std::string error;                   ///< when !ok
};

/// What /v1/status, /readyz and /metrics read about syncing (sync_status::snapshot).
struct sync_snapshot {
  std::int64_t backlog = -1;         ///< dirty sessions in Redis; -1 unknown
  std::int64_t last_success_ms = 0;  ///< wall time of the last successful run; 0 never
  std::int64_t last_duration_ms = 0; ///< of the last run, successful or not
  std::uint64_t runs = 0;            ///< runs finished (successful or not)
  std::uint64_t failures = 0;        ///< runs that failed
  std::uint64_t rows_written = 0;    ///< rows written to PostgreSQL, all runs
  std::uint64_t repaired = 0;        ///< sessions repaired, all runs
  std::uint64_t rejected_total = 0;  ///< sessions moved to the rejected hash, all runs
  std::int64_t rejected = -1;        ///< sessions in the rejected hash now; -1 unknown
  std::int64_t next_attempt_ms = 0;  ///< wall time of the next allowed attempt after a failure
  bool postgres_up = false;          ///< the last PostgreSQL contact succeeded
  std::string circuit = "closed";    ///< closed | open | half-open
  std::string last_error;            ///< of the last failed run
  /// The sync partitions the last successful run drained under this node's lease (sorted).
  std::vector<std::size_t> last_partitions;
};

/// Written by the sync actor only; read by the node without asking the actor (which is blocked
/// while it runs).
using sync_status = published<sync_snapshot>;

using sync_actor = caf::typed_actor<
    // Run a complete sync now (whatever the circuit says) and answer when it finished.
    caf::replies_to<sync_now_atom>::with<sync_report>,
    // The actor's own timer: refresh the backlog and run when due.
    caf::reacts_to<sync_tick_atom>>;

} // namespace sessiond::messages

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(sessiond::messages::sync_report)
