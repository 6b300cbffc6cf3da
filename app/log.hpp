// One-line log records on stderr: RFC 3339 time, level, message. Thread-safe (one write per line).
#pragma once

#include <string>
#include <string_view>

namespace sessiond::app {

enum class log_level { error = 0, warn = 1, info = 2, debug = 3 };

void set_log_level(std::string_view name);
void log(log_level lvl, std::string_view msg);
inline void log_info(std::string_view msg) {
  log(log_level::info, msg);
}
inline void log_warn(std::string_view msg) {
  log(log_level::warn, msg);
}
inline void log_error(std::string_view msg) {
  log(log_level::error, msg);
}
/// Logs at a level named "error", "warn" or anything else (info): the actors' log callbacks.
void log_at(const std::string& level, const std::string& msg);

} // namespace sessiond::app
