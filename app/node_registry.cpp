#include "app/node_registry.hpp"

#include <charconv>

namespace sessiond::app {

std::string registry_value(std::string_view mode, std::int64_t now_ms) {
  return std::string(mode) + " " + std::to_string(now_ms);
}

bool modes_compatible(std::string_view a, std::string_view b) {
  if (a == b)
    return true;
  auto pair = [&](std::string_view x, std::string_view y) {
    return (a == x && b == y) || (a == y && b == x);
  };
  return pair("shadow", "redis-read");
}

registry_view read_registry(const std::vector<std::pair<std::string, std::string>>& entries,
                            std::string_view self_id, std::string_view mode, std::int64_t now_ms) {
  registry_view view;
  for (const auto& [id, value] : entries) {
    if (id == self_id)
      continue;
    auto space = value.find(' ');
    std::int64_t seen = 0;
    bool readable = space != std::string::npos && space > 0;
    if (readable) {
      const char* end = value.data() + value.size();
      auto [at, ec] = std::from_chars(value.data() + space + 1, end, seen);
      readable = ec == std::errc() && at == end;
    }
    if (!readable || now_ms - seen > registry_forget_ms) {
      view.stale.push_back(id);
      continue;
    }
    peer p{id, value.substr(0, space), seen};
    if (now_ms - seen <= registry_live_ms && !modes_compatible(mode, p.mode))
      view.conflicting.push_back(std::move(p));
  }
  return view;
}

std::string conflict_message(std::string_view mode, const std::vector<peer>& conflicting,
                             std::int64_t now_ms, bool starting) {
  std::string line =
      "sessions.mode = " + std::string(mode) + " cannot run next to live nodes in other modes: ";
  for (std::size_t i = 0; i < conflicting.size(); ++i) {
    const auto& p = conflicting[i];
    auto ago = (now_ms - p.seen_ms) / 1000;
    line += (i ? ", " : "") + p.node_id + " (" + p.mode + ", seen " +
            std::to_string(ago < 0 ? 0 : ago) + " s ago)";
  }
  line += "; they write versions on two sides that do not see each other. ";
  return line + (starting
                     ? "Stop them first, or set sessions.mixed_modes = \"warn\" to start anyway"
                     : "Stop the nodes in the mode not meant (docs/modes.md)");
}

} // namespace sessiond::app
