// The node's side of API authentication: reading [auth]'s tokens files at start and on SIGHUP,
// and the start-up warning when the API is open beyond loopback. The checks are api/auth_gate.
#pragma once

#include "adapters/auth/tokens.hpp"
#include "adapters/metrics/registry.hpp"
#include "api/auth_gate.hpp"
#include "config/config.hpp"

#include <memory>
#include <string_view>

namespace sessiond::app {

/// Whether cfg.auth sets a tokens file (then every route but /healthz and /readyz needs one).
bool auth_enabled(const config::auth_section& a);

/// Both tokens files read into a set; null when neither is set. Throws config::config_error,
/// one line "config: auth: tokens file "<path>" <reason> (line n)", never a token's value.
std::shared_ptr<const auth::token_set> load_tokens(const config::auth_section& a);

/// Whether the host of http.listen (host:port) is a loopback address or localhost.
bool loopback_listen(std::string_view listen);

/// The gate for the API, null when no tokens file is set (then, on a listener that is not
/// loopback, one warning says the API is open). Throws config::config_error as load_tokens.
std::shared_ptr<api::auth_gate> make_auth_gate(const config::config& cfg,
                                               metrics::Registry& registry);

/// SIGHUP: reads the files again and installs the new set; a file that cannot be used keeps the
/// set loaded before. Logs one line either way; true when the new set is in place.
bool reload_tokens(const config::auth_section& a, api::auth_gate& gate);

} // namespace sessiond::app
