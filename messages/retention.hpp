// The retention actor's interface: it deletes old, ended user_session rows once a day at
// retention.at (UTC) on one node, and on request (POST /v1/admin/retention). The report is the
// PostgreSQL adapter's retention_report (a plain struct, no libpq in it).
#pragma once

#include "adapters/postgres/retention.hpp"
#include "messages/published.hpp"

#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/atom.hpp>
#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include <cstdint>
#include <optional>

namespace sessiond::messages {

using retention_run_atom = caf::atom_constant<caf::atom("retrun")>;
using retention_tick_atom = caf::atom_constant<caf::atom("rettick")>;

using retention_report = postgres::retention_report;

/// What /v1/status reads about retention (retention_info::snapshot).
struct retention_snapshot {
  bool enabled = false;
  bool running = false;                 ///< a run is in progress on this node
  std::int64_t next_run_ms = 0;         ///< wall time of the next scheduled run; 0 = none
  std::int64_t last_success_ms = 0;     ///< finished_ms of the last run that ran; 0 = never
  std::optional<retention_report> last; ///< this node's last run, skipped ones included
};

/// Written by the retention actor only; read by the node without asking the actor (which is
/// blocked while it runs).
using retention_info = published<retention_snapshot>;

using retention_actor = caf::typed_actor<
    // Run retention now and answer with its report when it finished. `true` asks for a dry run
    // (count, delete nothing); retention.dry_run makes every run dry. While retention.enabled
    // is false a deleting run answers status `disabled` and a dry run still runs. Answers
    // `skipped` when another node's run holds the lock. Blocks the actor for the whole run.
    caf::replies_to<retention_run_atom, bool>::with<retention_report>,
    // The actor's own timer: runs when the clock reached the next retention.at, reschedules.
    caf::reacts_to<retention_tick_atom>>;

} // namespace sessiond::messages

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(sessiond::messages::retention_report)
