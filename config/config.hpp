// The typed configuration of a sessiond node: every key with its default. Bounds and
// loading (TOML file, SESSIOND_<SECTION>_<KEY> and legacy environment variables) live in
// config.cpp, the job queue's tables ([queues…]) in queues.cpp; see docs/configuration.md.
#pragma once

#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace sessiond::config {

/// sessions.shards' upper bound; also how far the sync looks for dirty sets a larger setting left.
constexpr std::int64_t max_shards = 1024;

struct node_section {
  std::string id = "";            ///< empty: hostname-pid, filled at load
  std::int64_t actor_threads = 2; ///< CAF scheduler threads [1, 256]
  std::string log_level = "info"; ///< error | warn | info | debug
};

struct http_section {
  std::string listen = "127.0.0.1:8080"; ///< host:port; port 0 picks a free one
  std::int64_t io_threads = 2;           ///< [1, 256]
  std::int64_t max_body_bytes = 1048576; ///< [1024, 67108864]
  std::int64_t max_header_bytes = 16384; ///< [1024, 1048576]
  std::int64_t max_connections = 10000;  ///< [1, 1000000]
  std::int64_t header_timeout_ms = 5000; ///< [100, 600000]
  std::int64_t idle_timeout_ms = 60000;  ///< [100, 3600000]
  std::int64_t drain_timeout_ms = 10000; ///< [0, 600000] SIGTERM waits this long for in-flight
};

/// [auth]: bearer tokens of the HTTP API (docs/security.md). No file set: the API is open.
struct auth_section {
  std::string api_tokens_file;   ///< one token per line; they call every route but the admin ones
  std::string admin_tokens_file; ///< one token per line; they call every route
  bool protect_metrics = false;  ///< /metrics and the status page need a token too
};

/// [encryption]: session data encrypted at rest in Redis (docs/security.md). No file: plaintext.
struct encryption_section {
  std::string keys_file;                ///< "key_id:base64(32 bytes)" lines, the first is current
  std::int64_t rotate_batch = 1000;     ///< [1, 100000] keys the rotation pass scans per master/run
  std::int64_t rotate_interval_s = 600; ///< [0, 604800] a new rotation pass after this long
};

struct redis_section {
  std::string url = "redis://127.0.0.1:6379/0"; ///< secret: password masked when printed
  std::int64_t connections = 2;                 ///< [1, 64]
  std::int64_t connect_timeout_ms = 1000;       ///< [10, 60000]
  std::int64_t command_timeout_ms = 1000;       ///< [10, 60000]
  /// A session write is acknowledged only after WAIT saw this many replicas take it; 0: none.
  std::int64_t wait_replicas = 0;       ///< [0, 16]
  std::int64_t wait_timeout_ms = 200;   ///< [1, 60000], <= command_timeout_ms
  std::int64_t reconnect_min_ms = 100;  ///< [1, 60000]
  std::int64_t reconnect_max_ms = 5000; ///< [1, 600000], >= reconnect_min_ms
  std::string key_prefix = "sessiond:"; ///< 1-64 chars of [A-Za-z0-9:_.-]
  std::string tls_ca_file;              ///< rediss://: CA file (PEM); empty: system's
  std::string tls_cert_file; ///< rediss://: client certificate chain (PEM); with tls_key_file
  std::string tls_key_file;  ///< rediss://: its private key (PEM, unencrypted)
  /// The job queue's own Redis; empty: redis.url. Secret: password masked when printed.
  std::string queue_url;
  /// The cache's own Redis (allkeys-lru advised); empty: redis.url. Secret, as queue_url.
  std::string cache_url;
};

struct postgres_section {
  std::string url = "postgresql://postgres@127.0.0.1:5432/sessiond"; ///< secret: masked
  std::string schema = "public"; ///< [a-z_][a-z0-9_]{0,62}; created when missing
  bool migrate_on_start = true;
  std::int64_t connect_timeout_ms = 5000;    ///< [100, 600000]
  std::int64_t statement_timeout_ms = 30000; ///< [100, 3600000]
  std::int64_t pool_size = 4; ///< [1, 64] connections serving sessions from PostgreSQL
};

struct sessions_section {
  std::string mode = "redis-primary";     ///< postgres | shadow | redis-read | redis-primary
  std::int64_t ttl_s = 3600;              ///< idle TTL [1, 31536000]
  std::int64_t touch_interval_s = 60;     ///< [0, 86400], <= ttl_s
  std::int64_t max_lifetime_s = 604800;   ///< [1, 315360000], >= ttl_s
  std::int64_t tombstone_ttl_s = 604800;  ///< [1, 315360000] how long a revoked id stays refused
  std::int64_t shards = 16;               ///< [1, 1024]
  std::int64_t max_in_flight = 1024;      ///< per shard [1, 1000000]
  std::int64_t retry_after_s = 1;         ///< Retry-After on 503 [1, 3600]
  std::int64_t max_data_bytes = 65536;    ///< [64, 67108864] serialized `data`
  std::string on_redis_down = "postgres"; ///< postgres | reject
  std::string mixed_modes = "refuse";     ///< refuse | warn: live nodes in incompatible modes
};

struct sync_section {
  std::int64_t interval_ms = 60000;        ///< [100, 86400000] (legacy SESSION_SYNC_INTERVAL)
  std::int64_t batch_size = 2000;          ///< [1, 100000]
  std::int64_t max_dirty = 100000;         ///< [1, 100000000]
  std::int64_t max_backoff_ms = 60000;     ///< [100, 3600000]
  std::int64_t activity_interval_s = 300;  ///< [1, 86400]
  std::int64_t connections = 2;            ///< [1, 64] parallel PostgreSQL writers per run
  std::int64_t max_rejected_per_run = 100; ///< [0, 1000000] refused rows set aside per run
};

/// [cache.namespaces.<name>]: one read-through namespace (docs/cache.md). Every key optional.
struct cache_namespace {
  /// [1, 31536000] how long a value is fresh. Unset in the file: 300, or cache.tenant_ttl_s
  /// (TENANT_CACHE_TTL) for the namespace named "tenant".
  std::int64_t ttl_s = 300;
  double jitter_ratio = 0.1;           ///< [0, 0.5] each TTL drawn from ttl_s * (1 - r .. 1)
  std::int64_t negative_ttl_s = 30;    ///< [0, 86400] a loader's "no row" is kept; 0: not kept
  std::int64_t stale_if_error_s = 300; ///< [0, 86400] served past its TTL while the loader fails
  /// One SQL statement with exactly one parameter $1 (the key) returning at most one row whose
  /// first column is a JSON value (json, jsonb or text holding JSON); empty: no loader.
  std::string loader;
  /// One SQL statement without parameters returning (key text, value json) rows; empty: none.
  std::string warm;
  std::int64_t near_cache_entries = 10000; ///< [0, 10000000] in-process LRU; 0 turns it off
  std::int64_t near_ttl_ms = 1000;         ///< [1, 3600000] a near-cache entry is kept this long
  /// [0, 10] XFetch's beta: a hit reloads early with probability rising towards the expiry
  /// (larger: earlier); 0 turns early refresh off.
  double early_refresh_beta = 1.0;
};

struct cache_section {
  std::int64_t tenant_ttl_s = 3600;       ///< [1, 31536000] (legacy TENANT_CACHE_TTL)
  bool enabled = true;                    ///< false: no /v1/cache routes (404), no cache actors
  std::int64_t max_value_bytes = 1048576; ///< [2, 67108864] a value (PUT body or loaded) at most
  std::int64_t max_ttl_s = 2592000;       ///< [1, 31536000] the largest ?ttl_s a PUT may ask
  std::int64_t max_waiters = 10000;       ///< [1, 1000000] readers waiting for one key's load
  std::int64_t max_loads = 256;           ///< [1, 100000] loads running or queued per node
  std::int64_t lock_ms = 5000;            ///< [100, 600000] the cross-node load lock's life
  std::int64_t lock_poll_ms = 20;         ///< [1, 10000] a node that lost the lock looks again
  /// (0, 1] cache writes are skipped above this share of the cache Redis' maxmemory.
  double max_redis_memory_ratio = 0.8;
  std::int64_t invalidate_batch = 1000; ///< [10, 100000] SCAN COUNT and UNLINK batch size
  std::int64_t retry_after_s = 1;       ///< [1, 3600] Retry-After with 503
  /// [cache.namespaces.<name>], name [A-Za-z0-9._-]{1,64}; from the file only.
  std::map<std::string, cache_namespace> namespaces;
};

struct metrics_section {
  bool enabled = true;                ///< (legacy SESSION_METRICS_ENABLED)
  std::int64_t redis_poll_ms = 15000; ///< [100, 3600000]
};

struct retention_section {
  bool enabled = true;
  bool dry_run = false;
  std::int64_t days = 60;                   ///< [1, 36500]
  std::string at = "03:30";                 ///< HH:MM UTC
  bool catch_up = true;                     ///< run after start-up if the last `at` was missed
  std::int64_t batch_size = 5000;           ///< [1, 1000000]
  std::int64_t pause_ms = 50;               ///< [0, 600000]
  std::int64_t max_rows_per_run = 10000000; ///< [1, 1000000000]
};

/// How jobs of one type are run by the node's built-in workers ([queues.<name>.handlers.<type>]).
struct queue_handler {
  /// webhook | noop | pull (pull: no built-in worker, external workers lease).
  std::string kind = "pull";
  /// webhook: http:// or https:// URL (required for webhook, refused otherwise). Secret: password
  /// masked when printed.
  std::string url;
  std::int64_t timeout_ms = 10000; ///< webhook call timeout [100, 600000]
};

/// Settings of one queue: [queues.defaults], and [queues.<name>] which starts from the defaults.
struct queue_settings {
  /// Built-in worker slots [0, 10000] (used only when some handler is webhook or noop).
  std::int64_t concurrency = 10;
  std::int64_t lease_ms = 30000;         ///< [1000, 3600000]
  std::int64_t max_attempts = 3;         ///< [1, 1000]
  std::int64_t backoff_ms = 1000;        ///< first retry delay cap, full jitter [1, 86400000]
  std::int64_t max_backoff_ms = 3600000; ///< [1, 604800000], >= backoff_ms
  /// A job whose lease expired this many times fails for good [1, 1000].
  std::int64_t max_stalled = 3;
  /// Unfinished jobs (waiting+delayed+active) at most; enqueue past it answers 429
  /// [1, 100000000].
  std::int64_t max_length = 100000;
  std::int64_t keep_completed = 1000; ///< completed jobs kept [0, 10000000]
  std::int64_t keep_failed = 10000;   ///< failed jobs kept [0, 10000000]
  std::int64_t keep_age_s = 86400;    ///< finished jobs older than this are removed [1, 31536000]
  /// The oldest waiting job older than this raises an alert [1, 31536000].
  std::int64_t max_wait_s = 300;
  /// Handler failures in a row that open a type's circuit [1, 1000].
  std::int64_t circuit_failures = 5;
  /// An open circuit waits this long before a probe [100, 3600000].
  std::int64_t circuit_cooldown_ms = 30000;
  /// By job type ([A-Za-z0-9._:-]{1,64}); only in [queues.<name>], not in defaults.
  std::map<std::string, queue_handler> handlers;
};

/// A recurring job ([[queues.schedule]]): enqueued once per period across all nodes.
struct queue_schedule {
  std::string name;  ///< required, unique, [A-Za-z0-9._:-]{1,64}
  std::string queue; ///< required, [A-Za-z0-9._:-]{1,64}
  std::string type;  ///< required, [A-Za-z0-9._:-]{1,64}
  /// JSON object text, compact (as nlohmann::json dumps it, non-ASCII escaped) once loaded. In
  /// TOML either an inline table / table (strings, integers, floats, booleans, arrays, tables) or
  /// a string holding a JSON object; nested at most 128 deep, at most queues.max_payload_bytes.
  std::string payload = "{}";
  std::int64_t every_s = 0;  ///< [1, 31536000]; exactly one of every_s and at (0: not set)
  std::string at;            ///< "HH:MM" daily, UTC (same check as retention.at); empty: not set
  std::int64_t priority = 0; ///< [-1000, 1000], higher runs first
};

struct queues_section {
  bool require_noeviction = false; ///< refuse to start when the queue's Redis may evict keys
  /// Enqueue answers 503 above this share of maxmemory, (0, 1].
  double max_redis_memory_ratio = 0.9;
  /// [0, 600000] running jobs may finish this long on SIGTERM.
  std::int64_t shutdown_grace_ms = 10000;
  /// [10, 60000] stalled-job reaping and delayed promotion tick.
  std::int64_t maintenance_interval_ms = 250;
  std::int64_t lease_poll_ms = 50;   ///< [5, 10000] a parked long-poll lease looks again this often
  std::int64_t max_waiters = 1000;   ///< [1, 1000000] long-poll lease requests parked per node
  std::int64_t max_in_flight = 4096; ///< [1, 1000000] queue requests in flight per node, then 503
  std::int64_t retry_after_s = 1;    ///< [1, 3600] Retry-After with 429/503
  std::int64_t max_queues = 1000;    ///< [1, 100000] queues that may exist; also bounds `named`
  std::int64_t max_payload_bytes = 65536; ///< [2, 67108864] serialized job payload (and result)
  queue_settings defaults;
  /// [queues.<name>], name [A-Za-z0-9._:-]{1,64}, not "defaults", "schedule" or a [queues] key.
  /// From the file only; each holds every setting (the defaults filled in at load).
  std::map<std::string, queue_settings> named;
  std::vector<queue_schedule> schedule; ///< in file order
  /// The settings of queue `name`: named[name] if configured, else defaults.
  const queue_settings& settings_for(const std::string& name) const;
};

/// The whole configuration. Section and key names are exactly the TOML ones.
struct config {
  node_section node;
  http_section http;
  auth_section auth;
  encryption_section encryption;
  redis_section redis;
  postgres_section postgres;
  sessions_section sessions;
  sync_section sync;
  cache_section cache;
  metrics_section metrics;
  retention_section retention;
  queues_section queues;
};

/// A configuration error: one line naming the key, the value and what is allowed.
class config_error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// Environment as name → value (tests pass their own; the node passes ::environ).
using env_map = std::map<std::string, std::string>;
env_map process_env();

/// Defaults, then the TOML file (if path is not empty), then the legacy variables
/// (USE_REDIS_ONLY_SESSIONS…), then SESSIOND_<SECTION>_<KEY> (the most specific wins);
/// validates every key. Throws config_error.
config load(const std::string& path, const env_map& env);
/// Same, with TOML text instead of a file (for tests).
config load_string(const std::string& toml_text, const env_map& env);
/// Checks bounds and cross-key rules. Throws config_error.
void validate(const config& c);
/// The effective configuration as TOML, secrets (passwords in URLs, webhook URLs included) masked
/// as "****"; every named queue with all its settings, then the schedules. It loads back equal.
std::string to_toml(const config& c);

/// One key as documented: name, variable, default (as TOML), bounds and meaning.
struct key_info {
  std::string name;          ///< "section.key"
  std::string env;           ///< SESSIOND_SECTION_KEY
  std::string default_value; ///< TOML literal, e.g. 3600 or "info"
  std::string allowed;       ///< e.g. "1..31536000, >= sessions.ttl_s"
  std::string help;          ///< one line: meaning and unit
};
/// Every key, in file order (for docs and tests: each key is declared once, in config.cpp).
std::vector<key_info> keys();

/// Key-by-key equality over every key, the named queues, handlers and schedules included.
bool operator==(const config& a, const config& b);
bool operator!=(const config& a, const config& b);
/// Field-by-field equality (handlers included for queue_settings).
bool operator==(const queue_handler& a, const queue_handler& b);
bool operator==(const queue_settings& a, const queue_settings& b);
bool operator==(const queue_schedule& a, const queue_schedule& b);

} // namespace sessiond::config
