// Where each session operation is served. sessions.mode picks the store that decides
// (postgres, shadow and redis-read write PostgreSQL first; redis-primary writes Redis and syncs
// behind), and with sessions.on_redis_down = "postgres" a node whose Redis is unreachable
// serves sessions from PostgreSQL (degraded). Sessions written in PostgreSQL while Redis could
// not take them are noted there (session_redis_repair) and put back into Redis before reads
// return to it. No CAF: the HTTP threads call divert(), PostgreSQL work runs on the pool.
#pragma once

#include "actors/shard_env.hpp"
#include "adapters/postgres/pool.hpp"
#include "adapters/postgres/session_store.hpp"
#include "messages/session.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace sessiond::app {

enum class session_mode { postgres, shadow, redis_read, redis_primary };
/// "postgres", "shadow", "redis-read", "redis-primary" (config validated it).
session_mode parse_mode(const std::string& name);
const char* to_string(session_mode m);

/// How the node stands with Redis. `returning`: Redis is back and the sessions written in
/// PostgreSQL meanwhile are being put back; reads stay on PostgreSQL until that is done. The
/// switch back to `serving` is gated: new operations wait (briefly) while the operations still
/// on PostgreSQL finish and a last pass puts back what they noted, so it converges under
/// steady writes and no operation reads Redis while one of this node's notes is pending.
enum class redis_state { serving, degraded, returning };
const char* to_string(redis_state s);

/// Where one operation goes: the table of docs/modes.md as a function.
struct route_decision {
  bool postgres = false; ///< served from PostgreSQL (false: the Redis shards)
  bool mirror = false;   ///< copy what was written into Redis afterwards
  bool note = false;     ///< note what was written for put-back (Redis cannot take it now)
  bool operator==(const route_decision& o) const {
    return postgres == o.postgres && mirror == o.mirror && note == o.note;
  }
};
route_decision decide(session_mode mode, redis_state state, bool fallback,
                      messages::session_op_kind kind);

struct modes_options {
  session_mode mode = session_mode::redis_primary;
  bool fallback = true; ///< sessions.on_redis_down = "postgres"
  std::size_t shards = 16;
  postgres::client_options db; ///< the watcher's own connection
  postgres::store_settings store;
  std::chrono::milliseconds watch_interval{200};
  /// While serving, how often leftover notes (another node's, a crashed node's) are looked for.
  std::chrono::milliseconds put_back_interval{10000};
  /// Redis may take this long to connect at start before the node counts it as down.
  std::chrono::milliseconds start_grace{1100};
  std::chrono::milliseconds redis_wait{3000}; ///< bound on one blocking put-back script
  /// Returning: a pass that leaves at most this many notes is followed by the gated switch
  /// back to serving (operations wait while the last pass puts them back) ...
  std::int64_t switch_notes_max = 256;
  /// ... and so is any pass once this many passes left more (the pause is then longer).
  int switch_after_passes = 5;
  std::int64_t retry_after_s = 1;
  std::function<void(const std::string&)> info, warn;
};

struct modes_snapshot {
  session_mode mode = session_mode::redis_primary;
  redis_state state = redis_state::serving;
  bool degraded = false;             ///< sessions are served from PostgreSQL for Redis' sake
  std::int64_t repairs_pending = -1; ///< notes left after the last pass; -1 unknown
  std::uint64_t served_postgres = 0; ///< operations answered from PostgreSQL
  std::uint64_t mirror_failures = 0; ///< rows written in PostgreSQL but not copied to Redis
  std::uint64_t put_back = 0;        ///< sessions put back into Redis
  std::uint64_t state_changes = 0;
};

class session_modes {
public:
  /// `env` and `pool` must outlive this object.
  session_modes(modes_options o, const actors::shard_env& env, postgres::pool& pool);
  ~session_modes();
  session_modes(const session_modes&) = delete;
  session_modes& operator=(const session_modes&) = delete;

  /// Starts the watcher (every mode but postgres). Notes left in PostgreSQL make the node start
  /// in `returning`, so it serves from PostgreSQL until they are put back.
  void start();
  /// Stops the watcher; operations already on the pool complete. Idempotent.
  void stop();
  /// Wakes the watcher at once (Redis' connection state changed).
  void wake();

  /// True when `op` is served here (moved from; op.done completes on a pool or I/O thread);
  /// false when it goes to the Redis shards. During the switch back to serving the op is held
  /// (true) and sent on when the switch is over: from PostgreSQL, or by `to_shards` (on the
  /// watcher thread). Never blocks the caller (an I/O thread, which Redis replies need too).
  bool divert(messages::session_op& op, std::function<void(messages::session_op&&)> to_shards);
  /// redis-read: a read slid a session's idle TTL in Redis; slide it in PostgreSQL too, where
  /// liveness is decided in that mode. Fire-and-forget on the pool.
  void slide(const model::session& s);

  modes_snapshot snapshot() const;
  session_mode mode() const { return o_.mode; }
  /// PostgreSQL is needed to serve (readiness): every mode but redis-primary while serving.
  bool needs_postgres() const;
  /// Redis is needed to serve (readiness): redis-primary and redis-read, unless degraded.
  bool needs_redis() const;

private:
  /// `op` is already counted in in_flight_.
  void run(messages::session_op&& op, route_decision how);
  /// Returning: holds new operations, waits for those on PostgreSQL, puts back what is noted
  /// and switches to serving. False (still returning, operations released) when a step failed.
  bool gated_switch();
  postgres::store_result execute(postgres::client& c, const messages::session_op& op,
                                 bool note) const;
  void finish(const std::shared_ptr<messages::session_op>& op, messages::session_result&& r,
              std::vector<postgres::session_row>&& written, bool mirror);
  void note_later(const postgres::session_row& row);
  void watch();
  void set_state(redis_state s, const std::string& why);
  /// Puts every noted session back into Redis; returns the notes left (-1: a step failed).
  std::int64_t put_back_all();
  /// Logs the first failure of a streak; returns -1.
  std::int64_t failed_pass(const std::string& why);

  modes_options o_;
  const actors::shard_env& env_;
  postgres::pool& pool_;
  postgres::session_store store_, noting_store_;
  std::atomic<redis_state> state_{redis_state::serving};
  std::atomic<std::int64_t> repairs_pending_{-1};
  std::atomic<std::int64_t> in_flight_{0}; ///< operations on the pool now
  mutable std::atomic<std::uint64_t> served_{0}, mirror_failures_{0}, put_back_{0}, changes_{0};
  std::unique_ptr<postgres::client> db_; ///< the watcher's connection (watcher thread only)
  bool pass_failed_ = false;             ///< the last put-back pass failed (watcher thread only)
  std::mutex mtx_;
  std::condition_variable cv_;
  bool stop_ = false, woken_ = false;
  // The gate of the switch back to serving (gated_switch): while closed, divert() in a state
  // other than serving holds the op in held_; the switch sends them on when it is over.
  struct held_op {
    messages::session_op op;
    std::function<void(messages::session_op&&)> to_shards;
  };
  std::mutex gate_mtx_;
  bool gate_closed_ = false;
  std::vector<held_op> held_;
  int returning_passes_ = 0; ///< passes since returning began (watcher thread only)
  std::thread watcher_;
};

} // namespace sessiond::app
