// Runs one phase: resolve, split connections and rate over worker threads, connect, prefill,
// measure (sampling RSS meanwhile), merge the workers' results.
#include "bench/load.hpp"
#include "bench/worker.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <map>
#include <thread>

namespace sessiond::bench {

namespace asio = boost::asio;

void error_counts::merge(const error_counts& o) {
  connect += o.connect;
  io += o.io;
  timeout += o.timeout;
  protocol += o.protocol;
}

void phase_stats::merge(const phase_stats& o) {
  latency.merge(o.latency);
  wait.merge(o.wait);
  service.merge(o.service);
  requests += o.requests;
  ok += o.ok;
  for (std::size_t i = 0; i < codes.size(); ++i)
    codes[i] += o.codes[i];
  errors.merge(o.errors);
  unsent += o.unsent;
  if (by_target.size() < o.by_target.size())
    by_target.resize(o.by_target.size(), 0);
  for (std::size_t i = 0; i < o.by_target.size(); ++i)
    by_target[i] += o.by_target[i];
}

namespace {

using workers = std::vector<std::unique_ptr<worker>>;

/// cfg.targets, or the one target of url, where, proto; each resolved.
std::vector<resolved_target> resolve(const phase_config& cfg) {
  auto targets = cfg.targets;
  if (targets.empty())
    targets.push_back({cfg.url, cfg.where, cfg.proto});
  asio::io_context ioc;
  asio::ip::tcp::resolver resolver(ioc);
  std::vector<resolved_target> out;
  for (auto& t : targets) {
    boost::system::error_code ec;
    auto found = resolver.resolve(t.where.host, std::to_string(t.where.port), ec);
    if (ec)
      throw run_error(cfg.name + ": cannot resolve " + t.where.host + ": " + ec.message());
    out.push_back({t.url, t.proto, found});
  }
  return out;
}

/// Worker k gets an equal share of the connections and a proportional share of the rate,
/// its schedule shifted by k / rate so the workers' requests interleave. Connections are
/// numbered across workers, so connection i goes to target i % n whatever the thread count.
workers make_workers(const phase_config& cfg, const std::vector<resolved_target>& targets) {
  workers out;
  std::size_t first = 0;
  for (std::size_t k = 0; k < cfg.threads; ++k) {
    std::size_t conns = cfg.connections / cfg.threads + (k < cfg.connections % cfg.threads);
    double rate = cfg.rate * static_cast<double>(conns) / static_cast<double>(cfg.connections);
    double offset_ns = cfg.rate > 0 ? static_cast<double>(k) * 1e9 / cfg.rate : 0;
    out.push_back(std::make_unique<worker>(cfg, k, first, conns, rate, offset_ns, targets));
    first += conns;
  }
  return out;
}

/// Runs f(worker, k) on one thread per worker and waits for all of them.
void on_all(workers& ws, const std::function<void(worker&, std::size_t)>& f) {
  std::vector<std::thread> threads;
  for (std::size_t k = 0; k < ws.size(); ++k)
    threads.emplace_back([&f, &ws, k] { f(*ws[k], k); });
  for (auto& t : threads)
    t.join();
}

void connect_all(const phase_config& cfg, workers& ws) {
  std::vector<std::string> errors(ws.size());
  on_all(ws, [&errors](worker& w, std::size_t k) { errors[k] = w.connect_all(); });
  for (auto& e : errors)
    if (!e.empty())
      throw run_error(cfg.name + ": cannot connect to " + e);
}

std::map<std::string, std::uint64_t> by_label(const protocol& proto, const phase_stats& s) {
  std::map<std::string, std::uint64_t> out;
  for (std::size_t code = 0; code < s.codes.size(); ++code)
    if (s.codes[code] > 0)
      out[proto.label(static_cast<int>(code))] += s.codes[code];
  return out;
}

/// Writes every worker's writes to cfg.acked_file (see phase_config).
void write_acked(const phase_config& cfg, const workers& ws) {
  static const char* failures[] = {"connect", "io", "timeout", "protocol"};
  std::FILE* f = std::fopen(cfg.acked_file.c_str(), "w");
  if (f == nullptr)
    throw run_error(cfg.name + ": cannot write " + cfg.acked_file);
  for (auto& w : ws)
    for (auto& r : w->writes()) {
      std::fprintf(f, "bench-%llu %s %llu ", static_cast<unsigned long long>(r.n),
                   to_string(r.operation), static_cast<unsigned long long>(r.version));
      if (r.outcome > 0)
        std::fprintf(f, "%d", r.outcome);
      else
        std::fputs(failures[std::clamp(-1 - r.outcome, 0, 3)], f);
      std::fprintf(f, " %lld\n", static_cast<long long>(r.unix_ms));
    }
  if (std::fclose(f) != 0)
    throw run_error(cfg.name + ": cannot write " + cfg.acked_file);
}

double seconds_since(clock::time_point start) {
  return std::chrono::duration<double>(clock::now() - start).count();
}

void say(const phase_config& cfg, const std::string& line) {
  if (cfg.progress)
    cfg.progress(cfg.name + ": " + line);
}

} // namespace

phase_result run_phase(const phase_config& cfg) {
  auto targets = resolve(cfg);
  auto ws = make_workers(cfg, targets);
  say(cfg, "connecting " + std::to_string(cfg.connections) + " connections to " + cfg.url);
  connect_all(cfg, ws);
  phase_result out;
  out.name = cfg.name;
  out.url = cfg.url;
  for (auto& t : targets)
    out.urls.push_back(t.url);
  if (cfg.prefill) {
    say(cfg, "prefilling " + std::to_string(cfg.sessions) + " sessions");
    auto start = clock::now();
    auto n = ws.size();
    on_all(ws, [&cfg, n](worker& w, std::size_t k) { w.prefill(k, n, cfg.sessions); });
    out.prefill_s = seconds_since(start);
  }
  auto secs = [](auto d) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", std::chrono::duration<double>(d).count());
    return std::string(buf);
  };
  say(cfg, "warming up " + secs(cfg.warmup) + " s, then measuring " + secs(cfg.duration) + " s");
  rss_sampler rss(cfg.rss_pid);
  auto t0 = clock::now() + std::chrono::milliseconds(5); // all workers start on one schedule
  on_all(ws, [t0](worker& w, std::size_t) { w.measure(t0); });
  out.rss = rss.stop();
  for (auto& w : ws) {
    out.measured.merge(w->measured());
    out.prefill.merge(w->prefilled());
  }
  out.status = by_label(*targets.front().proto, out.measured);
  out.prefill_status = by_label(*targets.front().proto, out.prefill);
  out.measured_s = std::chrono::duration<double>(cfg.duration).count();
  if (!cfg.acked_file.empty())
    write_acked(cfg, ws);
  return out;
}

} // namespace sessiond::bench
