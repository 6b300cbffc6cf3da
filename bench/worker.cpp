// The bench's scheduling loop: hands requests to free connections (open or closed loop),
// records what comes back, reconnects, and enforces --timeout.
#include "bench/worker.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <iterator>

namespace sessiond::bench {

namespace asio = boost::asio;
using boost::system::error_code;
using std::chrono::duration_cast;
using std::chrono::nanoseconds;

namespace {

constexpr auto tick_period = std::chrono::milliseconds(50);
constexpr auto reconnect_delay = std::chrono::milliseconds(100);

std::uint64_t splitmix64(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

std::uint64_t to_ns(clock::duration d) {
  return static_cast<std::uint64_t>(
      std::max<std::int64_t>(0, duration_cast<nanoseconds>(d).count()));
}

} // namespace

worker::worker(const phase_config& cfg, std::size_t index, std::size_t first,
               std::size_t connections, double rate, double offset_ns,
               const std::vector<resolved_target>& targets)
    : cfg_(cfg),
      targets_(targets),
      schedule_timer_(ioc_),
      tick_timer_(ioc_),
      interval_ns_(rate > 0 ? 1e9 / rate : 0),
      offset_ns_(offset_ns),
      rng_(0x5eed0000ULL + index) { // the same seeds in every phase: the same request sequence
  for (std::size_t i = 0; i < connections; ++i) {
    std::size_t t = (first + i) % targets.size();
    conns_.push_back(std::make_unique<connection>(*this, ioc_, *targets[t].proto, t));
  }
  measured_.by_target.assign(targets.size(), 0);
  prefill_.by_target.assign(targets.size(), 0);
}

std::string worker::connect_all() {
  in_use_ = conns_.size();
  for (auto& c : conns_)
    c->connect(targets_[c->target()].where);
  run(mode::connect);
  return first_error_;
}

void worker::prefill(std::uint64_t first, std::uint64_t stride, std::uint64_t end) {
  prefill_next_ = first;
  prefill_stride_ = stride;
  prefill_end_ = end;
  mode_ = mode::prefill;
  kick_all();
  run(mode::prefill);
}

void worker::measure(clock::time_point t0) {
  t0_ = t0;
  t_warm_ = t0 + cfg_.warmup;
  t_end_ = t_warm_ + cfg_.duration;
  next_ = 0;
  mode_ = mode::measure;
  kick_all();
  run(mode::measure);
  measured_.unsent = count_unsent();
}

void worker::run(mode m) {
  mode_ = m;
  ioc_.restart();
  arm_tick();
  check_done();
  ioc_.run();
  mode_ = mode::stopped;
}

/// Starts a step: idle connections look for work, closed ones reconnect.
void worker::kick_all() {
  idle_.clear();
  for (auto& c : conns_) {
    if (c->open())
      on_free(*c);
    else if (mode_ == mode::prefill || wants_reconnect())
      reconnect(*c, {});
  }
}

void worker::on_free(connection& c) {
  auto now = clock::now();
  if (mode_ == mode::prefill && prefill_next_ < prefill_end_) {
    request_spec spec{op::put, prefill_next_, 0};
    prefill_next_ += prefill_stride_;
    ++in_use_;
    c.send(spec, now, now, false);
    return;
  }
  if (mode_ == mode::measure && !issuing_over(now)) {
    if (interval_ns_ == 0) {
      issue(c, now, now);
      return;
    }
    if (due(next_) <= now) {
      issue(c, due(next_), now);
      return;
    }
  }
  idle_.push_back(&c);
  arm_schedule();
  check_done();
}

void worker::issue(connection& c, clock::time_point scheduled, clock::time_point now) {
  if (interval_ns_ > 0)
    ++next_;
  ++in_use_;
  c.send(next_request(), scheduled, now, scheduled >= t_warm_);
}

request_spec worker::next_request() {
  auto pick = random_below(cfg_.mix.total());
  std::size_t i = 0;
  while (pick >= cfg_.mix.weight[i])
    pick -= cfg_.mix.weight[i++];
  return {static_cast<op>(i), random_below(cfg_.sessions), ++patch_counter_};
}

std::uint64_t worker::random_below(std::uint64_t n) {
  return static_cast<std::uint64_t>((static_cast<unsigned __int128>(splitmix64(rng_)) * n) >> 64);
}

bool worker::issuing_over(clock::time_point now) const {
  return now >= t_end_ || (interval_ns_ > 0 && due(next_) >= t_end_);
}

clock::time_point worker::due(std::uint64_t i) const {
  return t0_ +
         nanoseconds(static_cast<std::int64_t>(offset_ns_ + static_cast<double>(i) * interval_ns_));
}

/// Open loop: wake up when the next request is due, if a connection is free to send it.
void worker::arm_schedule() {
  if (mode_ != mode::measure || interval_ns_ == 0 || schedule_armed_ || idle_.empty() ||
      due(next_) >= t_end_)
    return;
  schedule_armed_ = true;
  schedule_timer_.expires_at(due(next_));
  schedule_timer_.async_wait([this](const error_code& ec) {
    schedule_armed_ = false;
    if (!ec)
      on_schedule();
  });
}

void worker::on_schedule() {
  auto now = clock::now();
  while (!idle_.empty() && !issuing_over(now) && due(next_) <= now)
    issue(take_idle(), due(next_), now);
  arm_schedule();
  check_done();
}

/// The most recently idle connection; with several targets, the most recently idle one of the
/// next target in turn when it has one, so an open loop's requests alternate over the targets
/// instead of following whichever connection was freed last.
connection& worker::take_idle() {
  auto pick = idle_.end() - 1;
  if (targets_.size() > 1)
    for (auto it = idle_.rbegin(); it != idle_.rend(); ++it)
      if ((*it)->target() == next_target_) {
        pick = std::next(it).base();
        break;
      }
  connection& c = **pick;
  idle_.erase(pick);
  next_target_ = (c.target() + 1) % targets_.size();
  return c;
}

void worker::arm_tick() {
  tick_timer_.expires_after(tick_period);
  tick_timer_.async_wait([this](const error_code& ec) {
    if (!ec)
      on_tick();
  });
}

/// Aborts connects and requests older than --timeout; their handlers report the failure.
void worker::on_tick() {
  auto now = clock::now();
  for (auto& c : conns_) {
    auto since = c->pending_since();
    if (since != clock::time_point{} && now - since > cfg_.timeout)
      c->abort_timeout();
  }
  if (mode_ != mode::stopped)
    arm_tick();
  check_done();
}

/// Ends the step once nothing is pending and no more requests will be issued; with the
/// timers cancelled, io_context::run() returns.
void worker::check_done() {
  if (in_use_ > 0 || mode_ == mode::stopped)
    return;
  if (mode_ == mode::measure && !issuing_over(clock::now()) && !idle_.empty())
    return;
  mode_ = mode::stopped;
  schedule_timer_.cancel();
  tick_timer_.cancel();
}

void worker::reconnect(connection& c, clock::duration delay) {
  ++in_use_;
  c.connect(targets_[c.target()].where, delay);
}

bool worker::wants_reconnect() const {
  return mode_ == mode::measure && !issuing_over(clock::now());
}

void worker::connected(connection& c) {
  --in_use_;
  if (mode_ == mode::connect) {
    idle_.push_back(&c);
    check_done();
    return;
  }
  on_free(c);
}

void worker::completed(connection& c, int code) {
  --in_use_;
  auto now = clock::now();
  record_write(c, code);
  if (mode_ == mode::prefill)
    count(prefill_, c, code, now);
  else if (c.measured())
    count(measured_, c, code, now);
  if (!c.keep_alive()) {
    c.close();
    reconnect(c, {});
    return;
  }
  on_free(c);
}

void worker::count(phase_stats& s, connection& c, int code, clock::time_point now) {
  ++s.requests;
  ++s.by_target[c.target()];
  if (c.proto().expected(code))
    ++s.ok;
  ++s.codes[static_cast<std::size_t>(std::clamp(code, 0, 599))];
  s.latency.record(to_ns(now - c.scheduled()));
  s.wait.record(to_ns(c.sent() - c.scheduled()));
  s.service.record(to_ns(now - c.sent()));
}

void worker::record_write(const connection& c, int outcome) {
  if (cfg_.acked_file.empty() || c.spec().operation == op::get)
    return;
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                std::chrono::system_clock::now().time_since_epoch())
                .count();
  writes_.push_back({c.spec().n, c.spec().operation, outcome > 0 ? c.version() : 0, outcome,
                     static_cast<std::int64_t>(ms)});
}

void worker::failed(connection& c, failure kind) {
  --in_use_;
  if (mode_ == mode::connect) {
    if (first_error_.empty())
      first_error_ = targets_[c.target()].url + ": " + c.last_error();
    check_done();
    return;
  }
  if (kind != failure::connect) // a request failed: the write may or may not have been applied
    record_write(c, -1 - static_cast<int>(kind));
  count_error(c, kind);
  bool again = mode_ == mode::prefill ? kind != failure::connect : wants_reconnect();
  if (again)
    reconnect(c, kind == failure::connect ? reconnect_delay : clock::duration{});
  else
    check_done();
}

void worker::count_error(connection& c, failure kind) {
  bool in_window =
      mode_ == mode::prefill || (kind == failure::connect ? clock::now() >= t_warm_ : c.measured());
  if (!in_window)
    return;
  auto& e = (mode_ == mode::prefill ? prefill_ : measured_).errors;
  switch (kind) {
  case failure::connect:
    ++e.connect;
    break;
  case failure::io:
    ++e.io;
    break;
  case failure::timeout:
    ++e.timeout;
    break;
  case failure::protocol:
    ++e.protocol;
    break;
  }
}

void worker::abandoned(connection&) {
  --in_use_;
  check_done();
}

/// Open loop: requests due inside the measured window that were never sent because no
/// connection became free in time. They are the backlog an overloaded target leaves.
std::uint64_t worker::count_unsent() const {
  if (interval_ns_ == 0)
    return 0;
  auto index_at = [this](clock::time_point t) {
    double x = (static_cast<double>(duration_cast<nanoseconds>(t - t0_).count()) - offset_ns_) /
               interval_ns_;
    return static_cast<std::uint64_t>(std::max(0.0, std::ceil(x)));
  };
  std::uint64_t first = std::max(next_, index_at(t_warm_));
  std::uint64_t end = index_at(t_end_);
  return end > first ? end - first : 0;
}

} // namespace sessiond::bench
