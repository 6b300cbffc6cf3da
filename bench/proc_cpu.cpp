#include "bench/proc_cpu.hpp"

#include <unistd.h>

#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

namespace sessiond::bench {

namespace {

/// The fields of /proc/PID/stat from the third (state) on, so f[k] is field k + 3; empty when
/// the process is gone. The second field (the command, in parentheses) may hold spaces.
std::vector<std::string> stat_fields(long pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line) || line.rfind(')') == std::string::npos)
    return {};
  std::istringstream rest(line.substr(line.rfind(')') + 2));
  return {std::istream_iterator<std::string>(rest), {}};
}

} // namespace

double proc_cpu_s(long pid, bool with_children) {
  auto f = stat_fields(pid);
  if (f.size() < 15)
    return 0;
  double ticks = std::stod(f[11]) + std::stod(f[12]); // fields 14 and 15
  if (with_children)
    ticks += std::stod(f[13]) + std::stod(f[14]);
  return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

long parent_pid(long pid) {
  auto f = stat_fields(pid);
  return f.size() < 2 ? -1 : std::stol(f[1]); // field 4
}

} // namespace sessiond::bench
