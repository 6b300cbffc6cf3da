// stderr logger (see log.hpp).
#include "app/log.hpp"

#include "model/session.hpp"
#include "model/ttl.hpp"

#include <unistd.h>

#include <atomic>
#include <string>

namespace sessiond::app {

namespace {
std::atomic<int> current_level{static_cast<int>(log_level::info)};
const char* names[] = {"error", "warn", "info", "debug"};
} // namespace

void set_log_level(std::string_view name) {
  for (int i = 0; i < 4; ++i)
    if (name == names[i])
      current_level.store(i);
}

void log(log_level lvl, std::string_view msg) {
  if (static_cast<int>(lvl) > current_level.load(std::memory_order_relaxed))
    return;
  std::string line = model::rfc3339_ms(model::system_clock().now_ms());
  line += ' ';
  line += names[static_cast<int>(lvl)];
  line += ' ';
  line += msg;
  line += '\n';
  auto rc = ::write(2, line.data(), line.size());
  (void)rc;
}

void log_at(const std::string& level, const std::string& msg) {
  log(level == "error" ? log_level::error : level == "warn" ? log_level::warn : log_level::info, msg);
}

} // namespace sessiond::app
