// `sessiond-bench queue`: no-op jobs through sessiond's job queue (the node's built-in pool, or
// external workers on the lease API): enqueue rate, processing rate, enqueue-to-start latency,
// Redis CPU and memory per job (see docs/bench.md; bench/queue.sh runs it beside BullMQ).
#pragma once

#include <string>
#include <vector>

namespace sessiond::bench {

/// Runs the queue bench with the arguments after `queue`; returns the exit code (0 done, 1 a
/// failure of the target or of a phase, 2 bad flags).
int run_queue_bench(const std::vector<std::string>& args);

} // namespace sessiond::bench
