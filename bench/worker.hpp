// A bench worker: one io_context, its share of the connections and of the request schedule.
#pragma once

#include "bench/connection.hpp"
#include "bench/load.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <memory>
#include <string>
#include <vector>

namespace sessiond::bench {

/// A phase target with its address resolved.
struct resolved_target {
  std::string url;
  const protocol* proto = nullptr;
  connection::endpoints where;
};

/// Owns `connections` connections and drives them through the phases of a run: connect_all,
/// prefill, measure. Each step runs the io_context on the calling thread until the step's
/// work is done; everything inside a worker happens on that one thread, so nothing is locked.
/// Workers never talk to each other: each has its own slice of the rate (open loop).
class worker {
public:
  /// `rate` is this worker's requests/s (0 = closed loop); its request i is due at
  /// t0 + offset_ns + i * 1e9 / rate. Its connections are the phase's `first` ..
  /// `first + connections - 1`; connection i goes to targets[i % targets.size()].
  worker(const phase_config& cfg, std::size_t index, std::size_t first, std::size_t connections,
         double rate, double offset_ns, const std::vector<resolved_target>& targets);

  /// Connects every connection; returns the first failure ("<url>: <why>"), or "" when all
  /// are up.
  std::string connect_all();
  /// PUTs sessions first, first + stride, … below end, as fast as the connections allow.
  void prefill(std::uint64_t first, std::uint64_t stride, std::uint64_t end);
  /// Warmup from t0, then measures for cfg.duration; waits for the requests in flight.
  void measure(clock::time_point t0);

  phase_stats& measured() { return measured_; }
  phase_stats& prefilled() { return prefill_; }
  /// The writes seen, when cfg.acked_file is set.
  const std::vector<write_record>& writes() const { return writes_; }

  // Connection callbacks, on this worker's thread.
  void connected(connection& c);
  void completed(connection& c, int code);
  void failed(connection& c, failure kind);
  void abandoned(connection& c);
  bool wants_reconnect() const;

private:
  enum class mode { connect, prefill, measure, stopped };

  void run(mode m);
  void kick_all();
  void on_free(connection& c);
  void issue(connection& c, clock::time_point scheduled, clock::time_point now);
  connection& take_idle();
  request_spec next_request();
  std::uint64_t random_below(std::uint64_t n);
  bool issuing_over(clock::time_point now) const;
  clock::time_point due(std::uint64_t i) const;
  void arm_schedule();
  void on_schedule();
  void arm_tick();
  void on_tick();
  void check_done();
  void reconnect(connection& c, clock::duration delay);
  void count(phase_stats& s, connection& c, int code, clock::time_point now);
  void count_error(connection& c, failure kind);
  void record_write(const connection& c, int outcome);
  std::uint64_t count_unsent() const;

  const phase_config& cfg_;
  boost::asio::io_context ioc_;
  const std::vector<resolved_target>& targets_;
  std::vector<std::unique_ptr<connection>> conns_;
  std::vector<connection*> idle_;
  std::size_t in_use_ = 0; ///< connections with a connect or request pending
  boost::asio::steady_timer schedule_timer_;
  boost::asio::steady_timer tick_timer_;
  bool schedule_armed_ = false;
  mode mode_ = mode::stopped;
  std::string first_error_;

  std::uint64_t prefill_next_ = 0;
  std::uint64_t prefill_stride_ = 1;
  std::uint64_t prefill_end_ = 0;

  double interval_ns_ = 0; ///< open loop only; 0 = closed loop
  double offset_ns_ = 0;
  clock::time_point t0_{};
  clock::time_point t_warm_{};
  clock::time_point t_end_{};
  std::uint64_t next_ = 0;      ///< open loop: index of the next request to send
  std::size_t next_target_ = 0; ///< open loop: the target take_idle() prefers
  std::uint64_t rng_;
  std::uint64_t patch_counter_ = 0;

  phase_stats measured_;
  phase_stats prefill_;
  std::vector<write_record> writes_;
};

} // namespace sessiond::bench
