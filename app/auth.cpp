// See auth.hpp.
#include "app/auth.hpp"

#include "app/log.hpp"

#include <string>

namespace sessiond::app {

bool auth_enabled(const config::auth_section& a) {
  return !a.api_tokens_file.empty() || !a.admin_tokens_file.empty();
}

std::shared_ptr<const auth::token_set> load_tokens(const config::auth_section& a) {
  if (!auth_enabled(a))
    return nullptr;
  try {
    return auth::load_token_set(a.api_tokens_file, a.admin_tokens_file);
  } catch (const auth::token_file_error& e) {
    throw config::config_error(std::string("config: auth: ") + e.what()); // exit 2 in main
  }
}

bool loopback_listen(std::string_view listen) {
  auto host = listen.substr(0, listen.rfind(':'));
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  return host == "localhost" || host == "::1" || host.substr(0, 4) == "127.";
}

std::shared_ptr<api::auth_gate> make_auth_gate(const config::config& cfg,
                                               metrics::Registry& registry) {
  auto tokens = load_tokens(cfg.auth);
  if (!tokens) {
    if (!loopback_listen(cfg.http.listen))
      log_warn("auth: no tokens file is set, so anyone who can reach " + cfg.http.listen +
               " may read, change and revoke every session and call the admin routes; set "
               "auth.api_tokens_file and auth.admin_tokens_file (docs/security.md)");
    return nullptr;
  }
  log_info("auth: " + std::to_string(tokens->api_count()) + " API and " +
           std::to_string(tokens->admin_count()) + " admin tokens loaded" +
           (cfg.auth.protect_metrics ? "; /metrics and the status page need a token too" : ""));
  api::auth_options o;
  o.protect_metrics = cfg.auth.protect_metrics;
  o.warn = [](const std::string& line) { log_warn(line); };
  return std::make_shared<api::auth_gate>(std::move(tokens), std::move(o), registry);
}

bool reload_tokens(const config::auth_section& a, api::auth_gate& gate) {
  try {
    auto tokens = auth::load_token_set(a.api_tokens_file, a.admin_tokens_file);
    log_info("auth: tokens files re-read: " + std::to_string(tokens->api_count()) + " API and " +
             std::to_string(tokens->admin_count()) + " admin tokens in use");
    gate.replace(std::move(tokens));
    gate.count_reload(true);
    return true;
  } catch (const auth::token_file_error& e) {
    auto old = gate.tokens();
    log_warn(std::string("auth: reload refused: ") + e.what() + "; keeping the " +
             std::to_string(old->api_count()) + " API and " + std::to_string(old->admin_count()) +
             " admin tokens loaded before");
    gate.count_reload(false);
    return false;
  }
}

} // namespace sessiond::app
