// `sessiond-bench retention`: the deletion rate of postgres::run_retention (the code the
// retention actor runs) on a generated user_session table (see docs/performance.md).
#pragma once

#include <string>
#include <vector>

namespace sessiond::bench {

/// Runs the retention bench with the arguments after `retention`; returns the exit code.
int run_retention_bench(const std::vector<std::string>& args);

} // namespace sessiond::bench
