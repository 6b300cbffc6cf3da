// Formats phase results as text or JSON, including the sessiond/redis ratios.
#include "bench/report.hpp"

#include <cstdio>
#include <map>
#include <ostream>
#include <string>

namespace sessiond::bench {

namespace {

using json = nlohmann::ordered_json;

double ms(std::uint64_t ns) {
  return static_cast<double>(ns) / 1e6;
}

double rps(std::uint64_t n, const phase_result& r) {
  return r.measured_s > 0 ? static_cast<double>(n) / r.measured_s : 0;
}

json latency_json(const histogram& h) {
  return {{"p50", ms(h.percentile(50))}, {"p90", ms(h.percentile(90))},
          {"p99", ms(h.percentile(99))}, {"p99_9", ms(h.percentile(99.9))},
          {"max", ms(h.max())},          {"min", ms(h.min())},
          {"mean", h.mean() / 1e6},      {"count", h.count()}};
}

json errors_json(const error_counts& e) {
  return {{"connect", e.connect},
          {"io", e.io},
          {"timeout", e.timeout},
          {"protocol", e.protocol},
          {"total", e.total()}};
}

json rss_json(const rss_samples& rss) {
  if (rss.pid == 0)
    return nullptr;
  return {{"pid", rss.pid},      {"first_kb", rss.first()},  {"last_kb", rss.last()},
          {"max_kb", rss.max()}, {"samples", rss.kb.size()}, {"samples_kb", rss.kb},
          {"note", rss.note}};
}

json phase_json(const options& o, const phase_result& r) {
  const auto& m = r.measured;
  json out = {{"url", r.url},
              {"requests", m.requests},
              {"ok", m.ok},
              {"duration_s", r.measured_s},
              {"throughput_rps", rps(m.requests, r)},
              {"ok_throughput_rps", rps(m.ok, r)},
              {"latency_ms", latency_json(m.latency)},
              {"status", r.status},
              {"errors", errors_json(m.errors)},
              {"rss", rss_json(r.rss)}};
  std::map<std::string, std::uint64_t> per_url; // a URL given twice counts once, with both
  for (std::size_t i = 0; i < r.urls.size() && i < m.by_target.size(); ++i)
    per_url[r.urls[i]] += m.by_target[i];
  json by_url = json::object();
  for (auto& [url, n] : per_url)
    by_url[url] = {{"requests", n}, {"throughput_rps", rps(n, r)}};
  out["by_url"] = by_url;
  out["service_ms"] = latency_json(m.service);
  if (o.rate > 0) {
    out["wait_ms"] = latency_json(m.wait);
    out["unsent"] = m.unsent;
  }
  if (o.prefill)
    out["prefill"] = {{"requests", r.prefill.requests},
                      {"ok", r.prefill.ok},
                      {"seconds", r.prefill_s},
                      {"status", r.prefill_status},
                      {"errors", errors_json(r.prefill.errors)}};
  return out;
}

json parameters_json(const options& o) {
  json mix = json::object();
  for (std::size_t i = 0; i < op_count; ++i)
    mix[to_string(static_cast<op>(i))] = o.mix.weight[i];
  auto secs = [](std::chrono::nanoseconds d) { return std::chrono::duration<double>(d).count(); };
  return {{"url", joined(o.urls)},
          {"urls", o.urls},
          {"connections", o.connections},
          {"threads", o.threads},
          {"duration_s", secs(o.duration)},
          {"warmup_s", secs(o.warmup)},
          {"timeout_s", secs(o.timeout)},
          {"loop", o.rate > 0 ? "open" : "closed"},
          {"rate", o.rate > 0 ? json(o.rate) : json(nullptr)},
          {"mix", mix},
          {"sessions", o.sessions},
          {"value_bytes", o.value_bytes},
          {"prefill", o.prefill},
          {"baseline", o.baseline_redis ? json("redis") : json(nullptr)},
          {"only", o.only_redis ? json("redis") : json(nullptr)},
          {"redis_url", shown_url(o.redis)},
          {"rss_pid", o.rss_pid > 0 ? json(o.rss_pid) : json(nullptr)},
          {"acked_file", o.acked_file.empty() ? json(nullptr) : json(o.acked_file)}};
}

const phase_result* find(const std::vector<phase_result>& phases, const char* name) {
  for (auto& p : phases)
    if (p.name == name)
      return &p;
  return nullptr;
}

double ratio(double a, double b) {
  return b > 0 ? a / b : 0;
}

struct ratios {
  double throughput, ok_throughput, p99;
};

bool sessiond_vs_redis(const std::vector<phase_result>& phases, ratios& out) {
  auto* s = find(phases, "sessiond");
  auto* r = find(phases, "redis");
  if (s == nullptr || r == nullptr)
    return false;
  out.throughput = ratio(rps(s->measured.requests, *s), rps(r->measured.requests, *r));
  out.ok_throughput = ratio(rps(s->measured.ok, *s), rps(r->measured.ok, *r));
  out.p99 = ratio(ms(s->measured.latency.percentile(99)), ms(r->measured.latency.percentile(99)));
  return true;
}

std::string fmt(const char* format, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, v);
  return buf;
}

std::string latency_line(const histogram& h) {
  return "p50 " + fmt("%.3f", ms(h.percentile(50))) + "  p90 " + fmt("%.3f", ms(h.percentile(90))) +
         "  p99 " + fmt("%.3f", ms(h.percentile(99))) + "  p99.9 " +
         fmt("%.3f", ms(h.percentile(99.9))) + "  max " + fmt("%.3f", ms(h.max())) + "  (mean " +
         fmt("%.3f", h.mean() / 1e6) + ")";
}

std::string codes_line(const std::map<std::string, std::uint64_t>& status) {
  std::string out;
  for (auto& [label, n] : status)
    out += (out.empty() ? "" : "  ") + label + ": " + std::to_string(n);
  return out.empty() ? "-" : out;
}

std::string errors_line(const error_counts& e) {
  return "connect " + std::to_string(e.connect) + "  io " + std::to_string(e.io) + "  timeout " +
         std::to_string(e.timeout) + "  protocol " + std::to_string(e.protocol);
}

std::string mb(std::uint64_t kb) {
  return fmt("%.1f MiB", static_cast<double>(kb) / 1024);
}

void print_prefill(std::ostream& out, const phase_result& r) {
  out << "prefill      " << r.prefill.requests << " writes in " << fmt("%.2f", r.prefill_s)
      << " s, ok " << r.prefill.ok << ", errors " << r.prefill.errors.total() << "\n";
}

void print_rss(std::ostream& out, const rss_samples& rss) {
  if (rss.pid == 0)
    return;
  out << "rss          first " << mb(rss.first()) << "  last " << mb(rss.last()) << "  max "
      << mb(rss.max()) << "  (pid " << rss.pid << ", " << rss.kb.size() << " samples)"
      << (rss.note.empty() ? "" : "  " + rss.note) << "\n";
}

void print_phase(std::ostream& out, const options& o, const phase_result& r) {
  const auto& m = r.measured;
  out << "\n== " << r.name << " (" << r.url << ") ==\n";
  if (o.prefill)
    print_prefill(out, r);
  out << "requests     " << m.requests << " in " << fmt("%.2f", r.measured_s)
      << " s: " << fmt("%.1f", rps(m.requests, r)) << " req/s (ok " << fmt("%.1f", rps(m.ok, r))
      << " req/s)\n";
  if (r.urls.size() > 1)
    for (std::size_t i = 0; i < r.urls.size() && i < m.by_target.size(); ++i)
      out << (i == 0 ? "by url       " : "             ") << r.urls[i] << "  " << m.by_target[i]
          << " (" << fmt("%.1f", rps(m.by_target[i], r)) << " req/s)\n";
  out << "latency ms   " << latency_line(m.latency) << "\n";
  if (o.rate > 0) {
    out << "service ms   " << latency_line(m.service) << "  (sent -> response)\n";
    out << "wait ms      " << latency_line(m.wait) << "  (due -> sent)\n";
    out << "unsent       " << m.unsent
        << " (due in the window, no free connection before the end)\n";
  }
  out << "status       " << codes_line(r.status) << "\n";
  out << "errors       " << errors_line(m.errors) << "\n";
  print_rss(out, r.rss);
}

} // namespace

json to_json(const options& o, const std::vector<phase_result>& phases) {
  json out = {{"parameters", parameters_json(o)}, {"phases", json::object()}};
  for (auto& p : phases)
    out["phases"][p.name] = phase_json(o, p);
  ratios r{};
  out["ratio_sessiond_over_redis"] =
      sessiond_vs_redis(phases, r)
          ? json{{"throughput", r.throughput}, {"ok_throughput", r.ok_throughput}, {"p99", r.p99}}
          : json(nullptr);
  return out;
}

void print_text(std::ostream& out, const options& o, const std::vector<phase_result>& phases) {
  out << "sessiond-bench: " << o.connections << " connections, " << o.threads << " thread(s), "
      << (o.rate > 0 ? "open loop at " + fmt("%.0f", o.rate) + " req/s" : "closed loop") << ", "
      << fmt("%g", std::chrono::duration<double>(o.duration).count()) << " s measured after "
      << fmt("%g", std::chrono::duration<double>(o.warmup).count()) << " s warmup\n"
      << "workload: mix " << to_string(o.mix) << ", " << o.sessions << " sessions, "
      << o.value_bytes << "-byte data, prefill " << (o.prefill ? "on" : "off") << "\n";
  for (auto& p : phases)
    print_phase(out, o, p);
  ratios r{};
  if (sessiond_vs_redis(phases, r))
    out << "\n== sessiond / redis ==\n"
        << "throughput   " << fmt("%.3f", r.throughput) << "x (ok only "
        << fmt("%.3f", r.ok_throughput) << "x)\n"
        << "p99 latency  " << fmt("%.2f", r.p99) << "x\n";
}

} // namespace sessiond::bench
