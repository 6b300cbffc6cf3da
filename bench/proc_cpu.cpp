#include "bench/proc_cpu.hpp"

#include <unistd.h>

#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

namespace sessiond::bench {

double proc_cpu_s(long pid, bool with_children) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line) || line.rfind(')') == std::string::npos)
    return 0;
  std::istringstream rest(line.substr(line.rfind(')') + 2)); // fields from 3 (state) on
  std::vector<std::string> f{std::istream_iterator<std::string>(rest), {}};
  if (f.size() < 15)
    return 0;
  double ticks = std::stod(f[11]) + std::stod(f[12]); // fields 14 and 15
  if (with_children)
    ticks += std::stod(f[13]) + std::stod(f[14]);
  return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

} // namespace sessiond::bench
