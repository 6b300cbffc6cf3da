// Shell helpers of the Redis Cluster tests: run a command, redis-cli against one node (replicas
// too, which the client never connects to).
#pragma once

#include <array>
#include <cstdio>
#include <string>

namespace sessiond::test {

/// Runs `cmd` with sh, stderr folded into stdout; the output without its trailing newlines.
inline std::string run_shell(const std::string& cmd) {
  std::string out;
  if (FILE* f = ::popen((cmd + " 2>&1").c_str(), "r")) {
    std::array<char, 4096> buf{};
    while (std::fgets(buf.data(), static_cast<int>(buf.size()), f) != nullptr)
      out += buf.data();
    ::pclose(f);
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r'))
    out.pop_back();
  return out;
}

/// redis-cli against the node at host:port.
inline std::string cli(const std::string& address, const std::string& args) {
  auto colon = address.rfind(':');
  return run_shell("redis-cli -h " + address.substr(0, colon) + " -p " + address.substr(colon + 1) +
                   " " + args);
}

} // namespace sessiond::test
