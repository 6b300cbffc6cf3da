// `sessiond-bench sync`: the write-behind measured on its own (see docs/performance.md).
#pragma once

#include <string>
#include <vector>

namespace sessiond::bench {

/// Runs the sync bench with the arguments after `sync`; returns the exit code.
int run_sync_bench(const std::vector<std::string>& args);

} // namespace sessiond::bench
