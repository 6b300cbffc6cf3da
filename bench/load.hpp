// One load phase against one target (sessiond or Redis): its parameters and its results.
#pragma once

#include "bench/histogram.hpp"
#include "bench/options.hpp"
#include "bench/protocol.hpp"
#include "bench/rss.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace sessiond::bench {

using clock = std::chrono::steady_clock;

/// One of the servers a phase loads.
struct phase_target {
  std::string url;
  target where;
  const protocol* proto = nullptr;
};

struct phase_config {
  std::string name; ///< "sessiond" or "redis"
  std::string url;  ///< as shown: every target's URL, comma-separated
  const protocol* proto = nullptr;
  target where;
  /// Several servers: connection i of the phase goes to targets[i % n]. Empty: the one target
  /// url, where, proto above.
  std::vector<phase_target> targets;
  std::size_t connections = 1;
  std::size_t threads = 1;
  std::chrono::nanoseconds duration{0};
  std::chrono::nanoseconds warmup{0};
  std::chrono::nanoseconds timeout{0};
  double rate = 0; ///< 0 = closed loop
  struct mix mix;
  std::uint64_t sessions = 1;
  bool prefill = true;
  long rss_pid = 0;
  /// Not empty: every write (put, patch, delete) of the prefill and the window is written to
  /// this file when the phase ends, one line each: `<id> <op> <version> <outcome> <unix ms>`,
  /// outcome the status code or the failure (io, timeout, connect, protocol).
  std::string acked_file;
  std::function<void(const std::string&)> progress; ///< one line per step; may be empty
};

/// One write as the bench saw its outcome (for phase_config::acked_file).
struct write_record {
  std::uint64_t n = 0;
  op operation = op::put;
  std::uint64_t version = 0; ///< from the response's ETag; 0 when none or no response
  int outcome = 0;           ///< HTTP status; < 0: a failure, -1 - int(failure kind)
  std::int64_t unix_ms = 0;
};

/// Transport failures; a response with an unexpected status is not one of these.
struct error_counts {
  std::uint64_t connect = 0;  ///< connect refused, unreachable, handshake refused
  std::uint64_t io = 0;       ///< reset, closed mid-response, write failures
  std::uint64_t timeout = 0;  ///< no complete response (or connect) within --timeout
  std::uint64_t protocol = 0; ///< unparsable response
  std::uint64_t total() const { return connect + io + timeout + protocol; }
  void merge(const error_counts& o);
};

/// What one worker (then the whole phase, merged) saw.
struct phase_stats {
  histogram latency;          ///< ns, from scheduled time (open loop) or send time to response
  histogram wait;             ///< ns, scheduled time to send time (open loop queueing)
  histogram service;          ///< ns, send time to response (what the target itself took)
  std::uint64_t requests = 0; ///< complete responses of any code
  std::uint64_t ok = 0;       ///< responses with an expected code
  std::vector<std::uint64_t> codes = std::vector<std::uint64_t>(600, 0);
  error_counts errors;
  std::uint64_t unsent = 0; ///< open loop: due in the window, never sent (backlog at the end)
  std::vector<std::uint64_t> by_target; ///< complete responses from each target, by index
  void merge(const phase_stats& o);
};

struct phase_result {
  std::string name;
  std::string url;
  std::vector<std::string> urls; ///< the targets, in the order of phase_stats::by_target
  phase_stats measured;
  phase_stats prefill;
  std::map<std::string, std::uint64_t> status;         ///< measured codes by label: "200", "nil"
  std::map<std::string, std::uint64_t> prefill_status; ///< the same for the prefill
  double prefill_s = 0;
  double measured_s = 0; ///< the --duration window
  rss_samples rss;
};

/// Fatal for the run (cannot resolve or connect): main prints what() and exits 1.
struct run_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Connects, prefills (when asked), warms up and measures; blocks until done.
phase_result run_phase(const phase_config& cfg);

} // namespace sessiond::bench
