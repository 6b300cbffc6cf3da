// `sessiond-bench upsert`: the write-behind's PostgreSQL statement alone, by server CPU per row
// (see docs/performance.md).
#pragma once

#include <string>
#include <vector>

namespace sessiond::bench {

/// Runs the upsert bench with the arguments after `upsert`; returns the exit code.
int run_upsert_bench(const std::vector<std::string>& args);

} // namespace sessiond::bench
