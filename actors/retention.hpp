// The retention actor (see messages/retention.hpp for its interface). It runs detached: a run
// blocks its own thread on libpq for minutes, never a scheduler thread.
#pragma once

#include "adapters/postgres/client.hpp"
#include "adapters/postgres/retention.hpp"
#include "config/config.hpp"
#include "messages/retention.hpp"
#include "model/ttl.hpp"

#include <caf/fwd.hpp>
#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace sessiond::metrics {
class Counter;
class Gauge;
class Registry;
} // namespace sessiond::metrics

namespace sessiond::actors {

struct retention_options {
  bool enabled = true;
  bool dry_run = false;              ///< every run counts only
  std::string at = "03:30";          ///< HH:MM, UTC
  postgres::retention_params params; ///< days, batch_size, pause, max_rows_per_run, node_id…
  postgres::client_options db;       ///< the actor's own connection
  /// The actor looks at the clock at least this often while waiting for retention.at, so a
  /// wall-clock step (NTP, suspend) moves the run with it.
  std::chrono::milliseconds max_wait{60000};
  /// retention.catch_up: catch_up_delay after start-up (on the injected clock), when no run of
  /// any node started since the last retention.at before start-up (session_retention_audit),
  /// one runs then. Not when the scheduled run comes less than an hour after that check.
  bool catch_up = true;
  std::chrono::milliseconds catch_up_delay{60000};
  /// One line per run, with a level ("info", "warn").
  std::function<void(std::string level, std::string line)> log;
  /// Set by the node at shutdown: a run in progress stops before its next batch (within one
  /// batch plus ~20 ms) and is audited as failed ("cancelled …").
  std::shared_ptr<std::atomic<bool>> stop = std::make_shared<std::atomic<bool>>(false);
  /// Tests: more hooks into the run (their `cancelled` is or-ed with `stop`).
  postgres::retention_hooks hooks;
};

/// The retention.* keys of `cfg` and node.id; `db` is left for the caller (the node's
/// postgres_options()).
retention_options make_retention_options(const config::config& cfg);

/// The metrics of docs/metrics.md, registered once per registry (registration merges).
struct retention_metrics {
  explicit retention_metrics(metrics::Registry& registry);
  metrics::Counter& runs_success;
  metrics::Counter& runs_failure;
  metrics::Counter& runs_skipped;
  metrics::Counter& rows_deleted;
  metrics::Gauge& last_success_timestamp;
  metrics::Gauge& last_duration;
  metrics::Counter& failures;
  metrics::Gauge& last_run_rows;
  /// Counts one finished run (disabled ones are not counted).
  void record(const messages::retention_report& r);
};

struct retention_state {
  std::shared_ptr<const retention_options> opts;
  std::shared_ptr<messages::retention_info> info;
  std::shared_ptr<retention_metrics> meters;
  const model::clock* clock = nullptr;
  std::optional<postgres::client> db; ///< connected on the first run; reconnects by itself
  std::int64_t next_run_ms = 0;       ///< 0 while disabled
  std::int64_t catch_up_ms = 0;       ///< when the catch-up check is due; 0: none pending
  std::int64_t missed_due_ms = 0;     ///< the scheduled time before start-up it looks back to
  static inline const char* name = "retention";
};

messages::retention_actor::behavior_type
retention(messages::retention_actor::stateful_pointer<retention_state> self,
          std::shared_ptr<const retention_options> opts,
          std::shared_ptr<messages::retention_info> info, std::shared_ptr<retention_metrics> meters,
          const model::clock* clock);

/// Spawns the retention actor detached. `registry` and `clock` must outlive it; `info` is what
/// /v1/status reads. The first scheduled run is the next retention.at after now (and a catch-up
/// run a minute after start when the last one was missed, see retention_options::catch_up).
messages::retention_actor spawn_retention(caf::actor_system& sys,
                                          std::shared_ptr<const retention_options> opts,
                                          metrics::Registry& registry,
                                          std::shared_ptr<messages::retention_info> info,
                                          const model::clock& clock = model::system_clock());

/// The report as JSON: the body of POST /v1/admin/retention and /v1/status's last_run
/// (docs/retention.md).
nlohmann::json retention_report_json(const messages::retention_report& r);

/// The one log line of a run, e.g. "retention: ran, deleted 5000 rows in 2 batches …".
std::string retention_log_line(const messages::retention_report& r);

} // namespace sessiond::actors
