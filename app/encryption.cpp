// See encryption.hpp.
#include "app/encryption.hpp"

#include "app/log.hpp"

namespace sessiond::app {

namespace {

std::string key_list(const crypto::keyring& k) {
  std::string out;
  for (const auto& id : k.ids())
    out += (out.empty() ? "" : ", ") + id;
  return out;
}

} // namespace

void load_keys(const config::encryption_section& e, actors::session_crypto& c) {
  if (e.keys_file.empty()) // the default: plaintext, as /v1/status says (no line: a start-up
    return;                // that fails later prints its one line alone)
  try {
    auto ring = crypto::keyring::load_file(e.keys_file);
    log_info("encryption: " + std::to_string(ring->ids().size()) + " keys loaded (" +
             key_list(*ring) + "); new values are sealed under \"" + ring->current_id() + "\"");
    c.keys.replace(std::move(ring));
  } catch (const crypto::key_file_error& err) {
    throw config::config_error(std::string("config: encryption: ") + err.what()); // exit 2
  }
}

bool reload_keys(const config::encryption_section& e, actors::session_crypto& c) {
  if (e.keys_file.empty()) {
    log_info("encryption: no keys file is set; nothing to re-read");
    return false;
  }
  try {
    auto ring = crypto::keyring::load_file(e.keys_file);
    log_info("encryption: keys file re-read: " + key_list(*ring) +
             " in use; new values are sealed "
             "under \"" +
             ring->current_id() + "\"");
    c.keys.replace(std::move(ring));
    return true;
  } catch (const crypto::key_file_error& err) {
    auto old = c.keys.get();
    log_warn(std::string("encryption: reload refused: ") + err.what() + "; keeping the keys " +
             (old ? key_list(*old) : std::string("(none)")) + " loaded before");
    return false;
  }
}

nlohmann::json encryption_status(const actors::session_crypto& c) {
  auto ring = c.keys.get();
  nlohmann::json j;
  j["enabled"] = ring != nullptr;
  j["current_key"] = ring ? nlohmann::json(ring->current_id()) : nlohmann::json();
  j["keys"] = ring ? nlohmann::json(ring->ids()) : nlohmann::json::array();
  auto last = c.last_pass();
  nlohmann::json pass;
  if (last.finished_ms == 0) {
    pass = nullptr; // no pass finished yet on this node
  } else {
    pass["finished_at_ms"] = last.finished_ms;
    pass["scanned"] = last.scanned;
    pass["plaintext"] = last.plaintext;
    pass["by_key"] = nlohmann::json::object();
    for (const auto& [id, n] : last.by_key)
      pass["by_key"][id] = n;
  }
  j["last_pass"] = pass;
  j["passes"] = c.passes.load();
  j["rotated"] = c.rotated.load();
  j["rotate_conflicts"] = c.rotate_conflicts.load();
  j["errors"] = {{"key_missing", c.key_missing.load()}, {"auth_failed", c.auth_failed.load()}};
  return j;
}

encryption_metrics::encryption_metrics(metrics::Registry& r)
    : registry_(r),
      key_missing_{&metrics::add_counter(
          r, "sessiond_encryption_errors_total",
          "Session values that did not decrypt, by reason: key_missing (the key id is not in "
          "encryption.keys_file), auth_failed (the tag did not verify: copied or changed).",
          {{"reason", "key_missing"}})},
      auth_failed_{&metrics::add_counter(
          r, "sessiond_encryption_errors_total",
          "Session values that did not decrypt, by reason: key_missing (the key id is not in "
          "encryption.keys_file), auth_failed (the tag did not verify: copied or changed).",
          {{"reason", "auth_failed"}})},
      rotated_{&metrics::add_counter(r, "sessiond_encryption_rotated_total",
                                     "Session values the rotation pass re-encrypted under the "
                                     "current key (from an older key or plaintext).")},
      conflicts_{&metrics::add_counter(r, "sessiond_encryption_rotate_conflicts_total",
                                       "Re-encryptions of the rotation pass a concurrent write "
                                       "fenced off (the write sealed the value itself).")},
      passes_{&metrics::add_counter(r, "sessiond_encryption_passes_total",
                                    "Complete rotation passes over every Redis master.")},
      enabled_(metrics::add_gauge(r, "sessiond_encryption_enabled",
                                  "1 when encryption.keys_file is set and loaded.")),
      plaintext_(metrics::add_gauge(r, "sessiond_encryption_values",
                                    "Session values in Redis per key id as of the last complete "
                                    "rotation pass (key_id=\"plaintext\": not encrypted).",
                                    {{"key_id", "plaintext"}})) {}

void encryption_metrics::update(const actors::session_crypto& c) {
  std::lock_guard<std::mutex> guard{mtx_};
  enabled_.Set(c.enabled() ? 1 : 0);
  key_missing_.advance(c.key_missing.load());
  auth_failed_.advance(c.auth_failed.load());
  rotated_.advance(c.rotated.load());
  conflicts_.advance(c.rotate_conflicts.load());
  passes_.advance(c.passes.load());
  auto last = c.last_pass();
  plaintext_.Set(static_cast<double>(last.plaintext));
  for (auto& [id, g] : by_key_)
    g->Set(0); // a key id the last pass no longer found
  for (const auto& [id, n] : last.by_key) {
    auto& g = by_key_[id];
    if (g == nullptr)
      g = &metrics::add_gauge(registry_, "sessiond_encryption_values",
                              "Session values in Redis per key id as of the last complete "
                              "rotation pass (key_id=\"plaintext\": not encrypted).",
                              {{"key_id", id}});
    g->Set(static_cast<double>(n));
  }
}

} // namespace sessiond::app
