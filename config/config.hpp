// The typed configuration of a sessiond node: every key with its default. Bounds and
// loading (TOML file, SESSIOND_<SECTION>_<KEY> and legacy environment variables) live in
// config.cpp; see docs/configuration.md.
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

struct redis_section {
  std::string url = "redis://127.0.0.1:6379/0"; ///< secret: password masked when printed
  std::int64_t connections = 2;                 ///< [1, 64]
  std::int64_t connect_timeout_ms = 1000;       ///< [10, 60000]
  std::int64_t command_timeout_ms = 1000;       ///< [10, 60000]
  std::int64_t reconnect_min_ms = 100;          ///< [1, 60000]
  std::int64_t reconnect_max_ms = 5000;         ///< [1, 600000], >= reconnect_min_ms
  std::string key_prefix = "sessiond:";         ///< 1-64 chars of [A-Za-z0-9:_.-]
  std::string tls_ca_file;                      ///< rediss://: CA file (PEM); empty: system's
  std::string tls_cert_file; ///< rediss://: client certificate chain (PEM); with tls_key_file
  std::string tls_key_file;  ///< rediss://: its private key (PEM, unencrypted)
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

struct cache_section {
  std::int64_t tenant_ttl_s = 3600; ///< [1, 31536000] (legacy TENANT_CACHE_TTL)
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

/// The whole configuration. Section and key names are exactly the TOML ones.
struct config {
  node_section node;
  http_section http;
  redis_section redis;
  postgres_section postgres;
  sessions_section sessions;
  sync_section sync;
  cache_section cache;
  metrics_section metrics;
  retention_section retention;
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
/// The effective configuration as TOML, secrets (passwords in URLs) masked as "****".
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

/// Key-by-key equality over every key.
bool operator==(const config& a, const config& b);
bool operator!=(const config& a, const config& b);

} // namespace sessiond::config
