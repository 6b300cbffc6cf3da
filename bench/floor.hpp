// `sessiond-bench floor`: a server that does the least a session node can do per request, to
// measure how close sessiond gets to it (see docs/performance.md, "The ceiling on this machine").
#pragma once

#include <string>
#include <vector>

namespace sessiond::bench {

/// Runs the floor server with the arguments after `floor` until SIGINT/SIGTERM; returns the
/// exit code.
int run_floor_server(const std::vector<std::string>& args);

} // namespace sessiond::bench
