// Fuzz target: Redis INFO text into the sessiond_redis_* metrics, metrics::parse_info and
// redis_info_metrics::update (Redis's replies are input sessiond does not control). Input: the
// INFO text; after a line "----" (if any), the lines of a CONFIG GET reply, name and value.
#include "adapters/metrics/redis_info.hpp"
#include "adapters/metrics/text_serializer.hpp"
#include "fuzz/fuzz_check.hpp"

#include <cmath>
#include <vector>

namespace {

using namespace sessiond::metrics;
using sessiond::fuzz::as_text;

std::vector<std::string> lines(std::string_view s) {
  std::vector<std::string> out;
  while (!s.empty()) {
    auto nl = s.find('\n');
    out.emplace_back(s.substr(0, nl));
    s = nl == std::string_view::npos ? std::string_view{} : s.substr(nl + 1);
  }
  return out;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* bytes, std::size_t size) {
  auto input = as_text(bytes, size);
  auto split = input.find("\n----\n");
  redis_info info;
  if (parse_info(input.substr(0, split), info) != errc::ok)
    return 0;
  if (split != std::string_view::npos) {
    std::map<std::string, std::string> config;
    if (parse_config_get(lines(input.substr(split + 6)), config) == errc::ok)
      apply_config(config, info);
  }
  for (const auto& [cmd, stats] : info.commands)
    FUZZ_CHECK(tracked_command(cmd)); // the cmd label stays within the fixed list
  static Registry registry;           // one across inputs: counters must never go down
  static redis_info_metrics metrics(registry);
  static double evicted = 0;
  metrics.update(info, std::chrono::system_clock::time_point{});
  auto s = metrics.latest();
  FUZZ_CHECK(s.valid);
  FUZZ_CHECK(std::isfinite(s.memory_ratio) && s.memory_ratio >= 0);
  FUZZ_CHECK(s.eviction_unsafe == eviction_unsafe(info.maxmemory_policy));
  FUZZ_CHECK(static_cast<double>(s.evicted_keys) >= evicted);
  evicted = static_cast<double>(s.evicted_keys);
  auto text = serialize(registry);
  FUZZ_CHECK(text.find("sessiond_redis_memory_used_bytes ") != std::string::npos);
  return 0;
}
