// The node's side of encryption at rest (docs/security.md "Encryption at rest"): reading
// [encryption]'s keys file at start and on SIGHUP, the "encryption" object of /v1/status, and
// its metrics. The sealing itself is adapters/crypto; its use actors/session_crypto.hpp.
#pragma once

#include "actors/session_crypto.hpp"
#include "adapters/metrics/helpers.hpp"
#include "adapters/metrics/registry.hpp"
#include "config/config.hpp"

#include <nlohmann/json.hpp>

#include <map>
#include <mutex>
#include <string>

namespace sessiond::app {

/// Loads encryption.keys_file into `c` (nothing when it is empty; then one info line says data
/// is stored as plaintext). Throws config::config_error, one line "config: encryption: keys file
/// "<path>" <reason> (line n)", never key material.
void load_keys(const config::encryption_section& e, actors::session_crypto& c);

/// SIGHUP: reads the keys file again; a file that cannot be used keeps the keys loaded before.
/// Logs one line either way; true when the new keys are in use.
bool reload_keys(const config::encryption_section& e, actors::session_crypto& c);

/// /v1/status's "encryption": enabled, current key, key ids, the last rotation pass's counts per
/// key id (as of that pass), error counts.
nlohmann::json encryption_status(const actors::session_crypto& c);

/// sessiond_encryption_* metrics, refreshed at each scrape.
class encryption_metrics {
public:
  explicit encryption_metrics(metrics::Registry& r);
  void update(const actors::session_crypto& c);

private:
  metrics::Registry& registry_;
  std::mutex mtx_;
  metrics::counter_follower key_missing_, auth_failed_, rotated_, conflicts_, passes_;
  metrics::Gauge& enabled_;
  metrics::Gauge& plaintext_;
  std::map<std::string, metrics::Gauge*> by_key_; ///< every key id a pass counted
};

} // namespace sessiond::app
