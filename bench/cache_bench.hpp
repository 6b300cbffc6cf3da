// `sessiond-bench cache`: the cache-aside capability (docs/cache.md) under load, beside its raw
// baselines in the same run: the hit path (near cache on, off) against Redis GET, and Zipf(0.99)
// reads over a real PostgreSQL table against the same SELECT sent straight to PostgreSQL.
#pragma once

#include <string>
#include <vector>

namespace sessiond::bench {

/// Runs the cache bench with the arguments after `cache`; it starts its own sessiond node as a
/// child process. Returns the exit code (0 done, 1 a failure of a target or of the node, 2 bad
/// flags).
int run_cache_bench(const std::vector<std::string>& args);

} // namespace sessiond::bench
