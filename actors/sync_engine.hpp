// The blocking work of one sync run, without CAF: read dirty sessions from Redis, upsert them
// into PostgreSQL version-fenced, and clear the marks of what was written; each worker reads the
// next batch from Redis while PostgreSQL writes the current one. The sync actor runs it on its
// own thread.
#pragma once

#include "actors/redis_scripts.hpp"
#include "actors/session_crypto.hpp"
#include "adapters/postgres/client.hpp"
#include "adapters/postgres/sessions.hpp"
#include "adapters/redis/client.hpp"
#include "model/key_layout.hpp"
#include "model/ttl.hpp"

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

namespace sessiond::actors {

struct sync_settings {
  std::string prefix = "sessiond:";
  /// The engine's Redis connection hints start here (past the session shards', sessions.shards).
  std::size_t first_hint = 16;
  /// Layout 1's dirty sets dirty:0 … dirty:<n-1> that the upgrade pass drains (sessions.shards'
  /// bound: a node of layout 1 may have run with any setting up to it).
  std::size_t legacy_sets = 1024;
  /// Shared with the session path (shard_env::legacy): true while keys of layout 1 may exist.
  /// The engine sets it at its first run unless Redis says the upgrade is done, and clears it
  /// when its pass found none left. nullptr: no upgrade pass.
  std::atomic<bool>* legacy = nullptr;
  /// Sessions the upgrade pass moves per run (SCAN batches of this many keys per master).
  std::size_t upgrade_batch = 1000;
  std::size_t batch_size = 2000; ///< sessions per Redis read and PostgreSQL upsert
  std::string node_id;           ///< the lease holder's name
  std::chrono::milliseconds lease_ttl{60000};
  std::chrono::milliseconds redis_wait{5000}; ///< bound on one blocking Redis call
  std::int64_t tombstone_ttl_ms = 604800000;
  std::int64_t max_lifetime_ms = 604800000; ///< sessions.max_lifetime_s: how long an index lives
  bool migrate = true;         ///< apply the embedded migrations on the first PostgreSQL connect
  std::size_t connections = 2; ///< dirty sets written in parallel, one PostgreSQL connection each
  /// Rows PostgreSQL refuses that one run sets aside (a table that refuses more fails the run).
  std::size_t max_rejected_per_run = 100;
  /// Session data is opened before it goes to PostgreSQL (which keeps plaintext jsonb); shared
  /// with the session path. The rotation pass re-seals values under older keys.
  std::shared_ptr<session_crypto> crypto = std::make_shared<session_crypto>();
  /// Session keys the rotation pass looks at per master and run (SCAN COUNT).
  std::size_t rotate_batch = 1000;
  /// A new rotation pass starts this long after the last one finished (0: at once).
  std::int64_t rotate_interval_ms = 600000;
};

/// A sync step failed; the dirty marks of what was not written are still in Redis.
class sync_error : public std::runtime_error {
public:
  sync_error(bool postgres, const std::string& what)
      : std::runtime_error(what), postgres_(postgres) {}
  /// True when PostgreSQL failed (false: Redis).
  bool postgres() const { return postgres_; }

private:
  bool postgres_;
};

struct sync_counts {
  std::uint64_t read = 0;       ///< dirty ids read
  std::uint64_t written = 0;    ///< rows inserted or replaced in PostgreSQL
  std::uint64_t statements = 0; ///< batch upserts (each BEGIN, COPY, INSERT, COMMIT) and lookups
  std::uint64_t acked = 0;      ///< dirty marks cleared
  std::uint64_t repaired = 0;   ///< sessions moved past PostgreSQL's version
  std::uint64_t skipped_sets = 0;
  std::uint64_t rejected = 0;      ///< marks moved to the rejected hash (rows PostgreSQL refused)
  std::string last_rejection;      ///< "<id> v<version>: <PostgreSQL's message>" of the last one
  std::uint64_t postgres_us = 0;   ///< time the workers waited for PostgreSQL (summed)
  std::uint64_t redis_wait_us = 0; ///< time the workers waited for Redis replies (summed)
  std::uint64_t indexed = 0;       ///< new sessions added to their user's index again
  std::uint64_t upgraded = 0;      ///< sessions moved from layout 1 to layout 2
  std::uint64_t resealed = 0;      ///< values the rotation pass re-encrypted
  std::uint64_t undecryptable = 0; ///< dirty sessions set aside: their data did not decrypt
  std::vector<std::size_t> partitions; ///< partitions this run drained under its lease, sorted
};

/// One dirty session as read from Redis (sync_read, or HGETALL); `present` is false when its key
/// was gone.
struct dirty_entry {
  std::string id;
  bool present = false;
  std::string version; ///< as stored ('' when gone), for the ack's comparison
  std::string last_activity;
  std::int64_t marked_ms = 0; ///< the dirty mark's score (when it was first set)
  postgres::session_row row;
  /// Not empty: the data did not decrypt (why, naming the key id); set aside, not written.
  std::string refusal;
};

/// Parses sync_read's reply; `now_ms` decides ACTIVE vs EXPIRED. Throws sync_error on a reply
/// of the wrong shape.
std::vector<dirty_entry> parse_dirty(const redis::reply& r, std::int64_t now_ms);

class sync_engine {
public:
  /// `redis`, `scripts` and `clock` must outlive the engine. PostgreSQL connects lazily.
  sync_engine(redis::client& redis, const redis_scripts& scripts, postgres::client_options pg,
              sync_settings settings, const model::clock& clock);
  ~sync_engine();

  /// One complete pass over every dirty set: each set's ids present at the start are written
  /// (later writes may be included); with nothing dirty, a `select 1` checks PostgreSQL instead.
  /// Sets are shared out to `connections` workers (the calling thread and connections - 1 more).
  /// Throws sync_error (the first failure; the other workers stop after their current batch); what
  /// was written before stays written.
  sync_counts run();
  /// Dirty ids over the partitions (one pipelined ZCARD each) and layout 1's sets while it may
  /// exist. Throws sync_error when Redis fails.
  std::int64_t backlog();
  /// The partitions that hold dirty marks now (one pipelined ZCARD each). Throws sync_error
  /// when Redis fails.
  std::vector<std::size_t> sets_to_drain();
  /// One step of the upgrade from layout 1 (while settings.legacy says keys of it may exist):
  /// drains layout 1's dirty sets into layout 2, then moves a batch of the sessions a SCAN of
  /// each master finds, then deletes layout 1's user indexes; once a whole pass found nothing,
  /// marks Redis upgraded and clears the flag. Returns the sessions moved. Throws sync_error.
  std::uint64_t upgrade_step();
  /// One step of the rotation pass: SCANs up to rotate_batch session keys per master, re-seals
  /// every value not under the current key (plaintext included; one reseal script each, fenced
  /// by version and value) and counts the values per key id; at the end of a pass publishes the
  /// counts (session_crypto::last_pass). Nothing while encryption is off. Returns the values
  /// re-sealed. Throws sync_error.
  std::uint64_t rotate_step();
  /// Sessions in the rejected hash (HLEN). Throws sync_error when Redis fails.
  std::int64_t rejected();
  /// The partitions whose lease this engine holds now (a run in progress), sorted. Any thread.
  std::vector<std::size_t> holding() const;
  /// Connects to PostgreSQL now if not connected (throws sync_error).
  void ping_postgres();

private:
  struct batch_read;

  redis::reply call(std::vector<std::string> args, std::size_t worker = 0);
  /// `commands` pipelined on one connection; the replies in order. Throws sync_error.
  std::vector<redis::reply> call_all(std::vector<std::vector<std::string>> commands,
                                     std::size_t worker = 0);
  /// Moves one session of layout 1 (blocking). Throws sync_error when Redis fails.
  bool upgrade_one(const std::string& id);
  /// Adds the sessions of `entries` created since their dirty mark to their users' indexes.
  void reindex(const std::vector<dirty_entry>& entries, std::size_t worker, sync_counts& counts);
  redis::reply eval(const redis::script& s, std::vector<std::string> keys,
                    std::vector<std::string> args, std::size_t worker = 0);
  postgres::client& pg(std::size_t worker = 0);
  bool acquire(std::size_t set, std::size_t worker);
  void release(std::size_t set, std::size_t worker);
  void sync_set(std::size_t set, std::size_t worker, sync_counts& counts);
  /// Starts reading set `set`'s next batch: the oldest dirty ids not in `skip` (the batch being
  /// written meanwhile) with their fields.
  std::shared_ptr<batch_read> read_next(std::size_t set, std::size_t worker,
                                        const std::vector<dirty_entry>& skip, sync_counts& counts);
  /// The batch once every reply is in; sync_error when Redis failed or did not answer in time.
  std::vector<dirty_entry> await_read(batch_read& read, sync_counts& counts);
  /// Upserts `rows`; when PostgreSQL refuses the batch for its data (row_refused()), halves it
  /// until the refused rows stand alone and appends them with the reason to `refused`, writing
  /// the others. Rethrows any other pg_error; sync_error past max_rejected_per_run.
  void upsert_isolating(std::size_t worker, std::vector<postgres::session_row> rows,
                        std::vector<std::string>& written,
                        std::vector<std::pair<std::string, std::string>>& refused,
                        sync_counts& counts);
  /// Upserts `entries` (their rows are moved out), then acks or repairs them; refused rows are
  /// moved to the rejected hash.
  void write_batch(std::size_t set, std::size_t worker, std::vector<dirty_entry>& entries,
                   sync_counts& counts);

  redis::client& redis_;
  const redis_scripts& scripts_;
  postgres::client_options pg_options_;
  sync_settings settings_;
  const model::clock& clock_;
  std::vector<std::unique_ptr<postgres::client>> pg_; ///< one per worker, connected lazily
  std::mutex migrate_mtx_;
  bool migrated_ = false;
  /// The rejected hash had entries at the start of this run (or got some in it): written ids are
  /// then removed from it, so it only lists sessions PostgreSQL still does not hold.
  std::atomic<bool> rejected_present_{false};
  std::atomic<std::size_t> refused_in_run_{0};
  model::key_layout keys_;
  /// Partitions whose lease is held now (set by acquire, cleared by release).
  std::array<std::atomic<bool>, model::sync_partitions> holding_{};
  // The upgrade pass (sync thread only).
  bool upgrade_checked_ = false;
  int upgrade_phase_ = 0;                 ///< 0 dirty sets, 1 sessions, 2 user indexes
  std::vector<std::string> scan_cursors_; ///< per master, "0" at the start of a pass
  std::uint64_t upgrade_found_ = 0;       ///< keys found in this pass
  // The rotation pass (sync thread only).
  std::vector<std::string> rotate_cursors_; ///< per master; empty: no pass under way
  rotation_counts rotate_counts_;           ///< of the pass under way
};

/// The hash of sessions whose row PostgreSQL refused: id → "<partition> <version> <ms> <reason>".
inline std::string rejected_hash_key(const std::string& prefix) {
  return model::key_layout{prefix}.rejected();
}

/// True when PostgreSQL refused a batch because of the data of some row in it (SQLSTATE class 22
/// data exception, 23 integrity constraint, 54 program limit, P0 raised by a trigger, or a row
/// the client would not encode), so smaller batches without that row would succeed. False for
/// failures of the connection, the server or the schema, which a later retry may cure.
bool row_refused(const postgres::pg_error& e);

} // namespace sessiond::actors
