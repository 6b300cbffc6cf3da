// What every session actor of a node shares: the Redis client, the clock, the scripts and
// the session settings. Built once by the node; read-only afterwards (any thread).
#pragma once

#include "actors/redis_scripts.hpp"
#include "actors/session_crypto.hpp"
#include "adapters/postgres/sessions.hpp"
#include "adapters/redis/client.hpp"
#include "model/key_layout.hpp"
#include "model/session.hpp"
#include "model/ttl.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace sessiond::actors {

/// Counters the session actors keep; read by /v1/status and metrics.
struct session_counters {
  std::atomic<std::uint64_t> redis_failures{0}; ///< ops answered 503 because Redis failed
  std::atomic<std::uint64_t> cas_retries{0};    ///< writes retried after another node won
  std::atomic<std::uint64_t> touches{0};        ///< idle-TTL slides sent
  std::atomic<std::uint64_t> read_through{0};   ///< Redis misses looked up in PostgreSQL
  std::atomic<std::uint64_t> restored{0};       ///< sessions put back into Redis from PostgreSQL
  std::atomic<std::uint64_t> shard_restarts{0};
  std::atomic<std::uint64_t> router_restarts{0};
};

struct shard_env {
  redis::client* redis = nullptr;
  const model::clock* clock = nullptr;
  redis_scripts scripts;
  model::ttl_policy policy;
  std::int64_t default_ttl_s = 3600;
  std::int64_t tombstone_ttl_s = 604800;
  std::size_t max_data_bytes = 65536;
  std::int64_t retry_after_s = 1;
  std::int64_t max_user_sessions = 1000;
  std::int64_t activity_interval_ms = 300000; ///< a pure touch marks dirty once per interval
  std::string prefix = "sessiond:";
  int wait_replicas = 0; ///< redis.wait_replicas: writes are acknowledged after WAIT saw these
  std::chrono::milliseconds wait_timeout{200};
  model::key_layout keys; ///< built from prefix by the node
  /// Encryption of session data: every value written to Redis is sealed, every one read opened.
  std::shared_ptr<session_crypto> crypto = std::make_shared<session_crypto>();
  /// Keys of layout 1 may still exist (until the upgrade pass found none): a miss in layout 2
  /// looks there before PostgreSQL, and a PUT does not create a session that layout 1 holds.
  mutable std::atomic<bool> legacy{false};
  mutable session_counters counters;
  /// Read-through on a Redis miss: looks `id` up in PostgreSQL off the I/O threads and calls
  /// back (on a PostgreSQL worker thread) with the row, or nullopt when there is none or
  /// PostgreSQL cannot answer. Returns false when it cannot take the lookup now (queue full).
  /// Empty: no read-through.
  using row_callback = std::function<void(std::optional<postgres::session_row>)>;
  std::function<bool(const std::string& id, row_callback)> load_row;
  /// The live sessions PostgreSQL holds for a user (its user_id index), for listings and "log
  /// out everywhere": called back on a PostgreSQL worker thread with the rows, or nullopt when
  /// PostgreSQL cannot answer. Returns false when it cannot take the lookup now. Empty: Redis's
  /// index alone.
  using rows_callback = std::function<void(std::optional<std::vector<postgres::session_row>>)>;
  std::function<bool(const std::string& uid, rows_callback)> load_user_rows;
  /// Called on the I/O thread after a read slid a session's idle TTL in Redis (`s` holds the
  /// new times). The redis-read mode, where PostgreSQL decides what is live, slides it there
  /// too. Empty: nothing.
  std::function<void(const model::session& s)> on_touch;

  /// A session write script: eval, or with redis.wait_replicas, eval then WAIT on its connection.
  void write_eval(std::size_t hint, const redis::script& s, std::vector<std::string> k,
                  std::vector<std::string> a, redis::callback cb) const {
    if (wait_replicas > 0)
      return redis->eval_replicated(hint, s, std::move(k), std::move(a), wait_replicas,
                                    wait_timeout, std::move(cb));
    redis->eval(hint, s, std::move(k), std::move(a), std::move(cb));
  }

  std::string session_key(const std::string& id) const { return keys.session(id); }
  std::string user_key(const std::string& uid) const { return keys.user(uid); }
  std::string dirty_key(const std::string& id) const { return keys.dirty(model::partition_of(id)); }
  /// Adds session `id` of `uid`, created at `created_ms`, to the user's index (fire and forget:
  /// the sync adds every session it writes again, which repairs a lost add).
  void index_session(std::size_t hint, const std::string& uid, const std::string& id,
                     std::int64_t created_ms) const {
    auto now = clock->now_ms();
    redis->eval(hint, scripts.index_add, {user_key(uid)},
                {std::to_string(created_ms), id, std::to_string(now),
                 std::to_string(created_ms + policy.max_lifetime_s * 1000)},
                [](redis::errc, redis::reply&&) {});
  }
  /// The row layout of the restore, mirror and put_back scripts for a PostgreSQL row, its data
  /// sealed (PostgreSQL holds it as plaintext jsonb). The idle TTL (not a column) is what is
  /// left between last activity and expiry.
  std::vector<std::string> row_args(const postgres::session_row& row) const {
    auto ttl_s = std::clamp<std::int64_t>(
        (row.expires_at_ms - row.last_activity_at_ms + 999) / 1000, 1, policy.max_lifetime_s);
    return {row.session_id,
            std::to_string(row.version),
            row.user_id,
            row.status == "REVOKED" ? "R" : "A",
            std::to_string(row.created_at_ms),
            std::to_string(row.last_activity_at_ms),
            std::to_string(row.expires_at_ms),
            std::to_string(ttl_s),
            crypto->seal(row.session_id, row.data),
            std::to_string(row.revoked_at_ms),
            std::to_string(tombstone_ttl_s * 1000)};
  }
};

} // namespace sessiond::actors
