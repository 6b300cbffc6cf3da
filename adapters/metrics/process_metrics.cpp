// Reads the process_* metrics from procfs (proc(5)): stat, limits and the fd directory.
#include "adapters/metrics/process_metrics.hpp"

#include <unistd.h>

#include <charconv>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <optional>
#include <sstream>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace sessiond::metrics {

const char* to_string(errc e) {
  switch (e) {
  case errc::ok:
    return "ok";
  case errc::unreadable:
    return "unreadable";
  case errc::malformed:
    return "malformed";
  }
  return "unknown";
}

namespace {

std::optional<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary); // procfs files report size 0: read to EOF
  if (!in)
    return std::nullopt;
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::optional<unsigned long long> to_number(std::string_view s) {
  unsigned long long v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || end != s.data() + s.size())
    return std::nullopt;
  return v;
}

std::vector<std::string_view> split(std::string_view s) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\n' || s[i] == '\t'))
      ++i;
    auto start = i;
    while (i < s.size() && s[i] != ' ' && s[i] != '\n' && s[i] != '\t')
      ++i;
    if (i > start)
      out.push_back(s.substr(start, i - start));
  }
  return out;
}

/// The fields of /proc/self/stat we use. The command name (field 2) is in parentheses and
/// may itself hold spaces and ')', so fields are counted from the last ')'.
struct proc_stat {
  unsigned long long cpu_ticks = 0;   ///< utime + stime (fields 14, 15)
  unsigned long long start_ticks = 0; ///< starttime, ticks after boot (field 22)
  unsigned long long vsize_bytes = 0; ///< field 23
  unsigned long long rss_pages = 0;   ///< field 24
};

std::optional<proc_stat> parse_stat(std::string_view text) {
  auto close = text.rfind(')');
  if (close == std::string_view::npos)
    return std::nullopt;
  auto fields = split(text.substr(close + 1)); // fields[0] is field 3 (state)
  auto field = [&fields](std::size_t n) {
    return n - 3 < fields.size() ? to_number(fields[n - 3]) : std::nullopt;
  };
  auto utime = field(14), stime = field(15), start = field(22), vsize = field(23), rss = field(24);
  if (!utime || !stime || !start || !vsize || !rss)
    return std::nullopt;
  return proc_stat{*utime + *stime, *start, *vsize, *rss};
}

/// `btime` of /proc/stat: boot time, Unix seconds.
std::optional<unsigned long long> parse_boot_time(const std::string& text) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("btime ", 0) == 0) {
      auto fields = split(std::string_view(line).substr(6));
      return fields.empty() ? std::nullopt : to_number(fields.front());
    }
  }
  return std::nullopt;
}

/// The soft limit on the "Max open files" line of /proc/self/limits; +Inf for "unlimited".
std::optional<double> parse_max_open_files(const std::string& text) {
  constexpr std::string_view key = "Max open files";
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key, 0) != 0)
      continue;
    auto fields = split(std::string_view(line).substr(key.size()));
    if (fields.empty())
      return std::nullopt;
    if (fields.front() == "unlimited")
      return std::numeric_limits<double>::infinity();
    auto v = to_number(fields.front());
    return v ? std::optional<double>(static_cast<double>(*v)) : std::nullopt;
  }
  return std::nullopt;
}

Gauge& add_gauge(Registry& registry, const std::string& name, const std::string& help) {
  return BuildGauge().Name(name).Help(help).Register(registry).Add({});
}

} // namespace

process_metrics::process_metrics(Registry& registry, std::string proc_root)
    : proc_root_(std::move(proc_root)),
      cpu_seconds_(BuildCounter()
                       .Name("process_cpu_seconds_total")
                       .Help("Total user and system CPU time spent in seconds.")
                       .Register(registry)
                       .Add({})),
      resident_bytes_(
          add_gauge(registry, "process_resident_memory_bytes", "Resident memory size in bytes.")),
      virtual_bytes_(
          add_gauge(registry, "process_virtual_memory_bytes", "Virtual memory size in bytes.")),
      open_fds_(add_gauge(registry, "process_open_fds", "Number of open file descriptors.")),
      max_fds_(add_gauge(registry, "process_max_fds", "Maximum number of open file descriptors.")),
      start_time_seconds_(add_gauge(registry, "process_start_time_seconds",
                                    "Start time of the process since unix epoch in seconds.")) {}

errc process_metrics::update() {
  std::lock_guard<std::mutex> lock{mutex_};
  errc first = errc::ok;
  for (auto e : {update_stat(), update_limits(), update_fds()}) {
    if (first == errc::ok)
      first = e;
  }
  return first;
}

errc process_metrics::update_stat() {
  auto stat_text = read_file(proc_root_ + "/self/stat");
  auto system_text = read_file(proc_root_ + "/stat");
  if (!stat_text || !system_text)
    return errc::unreadable;
  auto stat = parse_stat(*stat_text);
  auto boot_time_s = parse_boot_time(*system_text);
  if (!stat || !boot_time_s)
    return errc::malformed;
  const auto ticks_per_s = static_cast<double>(sysconf(_SC_CLK_TCK));
  const auto page_bytes = static_cast<double>(sysconf(_SC_PAGESIZE));

  // A counter only goes up: advance it by the difference to /proc's total. Only this object
  // updates it, under mutex_, so it ends up equal to the total (exactly while the total has
  // not more than doubled since the last update: Sterbenz).
  double cpu_s = static_cast<double>(stat->cpu_ticks) / ticks_per_s;
  double behind = cpu_s - cpu_seconds_.Value();
  if (behind > 0)
    cpu_seconds_.Increment(behind);
  resident_bytes_.Set(static_cast<double>(stat->rss_pages) * page_bytes);
  virtual_bytes_.Set(static_cast<double>(stat->vsize_bytes));
  start_time_seconds_.Set(static_cast<double>(*boot_time_s) +
                          static_cast<double>(stat->start_ticks) / ticks_per_s);
  return errc::ok;
}

errc process_metrics::update_limits() {
  auto text = read_file(proc_root_ + "/self/limits");
  if (!text)
    return errc::unreadable;
  auto max = parse_max_open_files(*text);
  if (!max)
    return errc::malformed;
  max_fds_.Set(*max);
  return errc::ok;
}

errc process_metrics::update_fds() {
  std::error_code ec;
  std::filesystem::directory_iterator it(proc_root_ + "/self/fd", ec), end;
  if (ec)
    return errc::unreadable;
  // Counts the descriptor the iteration itself holds open too, as the Go client does.
  std::size_t n = 0;
  for (; it != end; it.increment(ec)) {
    if (ec)
      return errc::unreadable;
    ++n;
  }
  if (ec)
    return errc::unreadable;
  open_fds_.Set(static_cast<double>(n));
  return errc::ok;
}

} // namespace sessiond::metrics
