// sessiond-bench: parses the flags, runs the sessiond and/or Redis phases, prints the report.
#include "bench/cache_bench.hpp"
#include "bench/floor.hpp"
#include "bench/load.hpp"
#include "bench/options.hpp"
#include "bench/protocol.hpp"
#include "bench/queue_bench.hpp"
#include "bench/report.hpp"
#include "bench/retention.hpp"
#include "bench/rss.hpp"
#include "bench/sync_bench.hpp"
#include "bench/upsert_bench.hpp"

#include <iostream>
#include <memory>
#include <string>
#include <vector>

namespace bench = sessiond::bench;

namespace {

using protocols = std::vector<std::unique_ptr<bench::protocol>>;

/// The Redis phase has one target; the sessiond phase one per --url, protos[i] for o.http[i].
bench::phase_config make_config(const bench::options& o, bool redis, const protocols& protos) {
  bench::phase_config c;
  c.name = redis ? "redis" : "sessiond";
  c.url = redis ? bench::shown_url(o.redis) : bench::joined(o.urls);
  c.proto = protos.front().get();
  c.where = redis ? o.redis : o.http.front();
  if (!redis)
    for (std::size_t i = 0; i < o.urls.size(); ++i)
      c.targets.push_back({o.urls[i], o.http[i], protos[i].get()});
  c.connections = o.connections;
  c.threads = o.threads;
  c.duration = o.duration;
  c.warmup = o.warmup;
  c.timeout = o.timeout;
  c.rate = o.rate;
  c.mix = o.mix;
  c.sessions = o.sessions;
  c.prefill = o.prefill;
  c.rss_pid = redis == o.only_redis ? o.rss_pid : 0; // sample the phase of the process under test
  if (!redis)
    c.acked_file = o.acked_file;
  if (!o.json)
    c.progress = [](const std::string& line) { std::cerr << "sessiond-bench: " << line << "\n"; };
  return c;
}

void print(const bench::options& o, const std::vector<bench::phase_result>& results) {
  if (o.json)
    std::cout << bench::to_json(o, results).dump(2) << std::endl;
  else
    bench::print_text(std::cout, o, results);
}

int run(const bench::options& o) {
  std::vector<bench::phase_result> results;
  try {
    if (!o.only_redis) {
      protocols http; // one per URL: each sends its own Host header
      for (auto& t : o.http)
        http.push_back(bench::make_http_protocol(t, o.value_bytes));
      results.push_back(bench::run_phase(make_config(o, false, http)));
    }
    if (o.only_redis || o.baseline_redis) {
      protocols redis;
      redis.push_back(bench::make_redis_protocol(o.redis, o.value_bytes));
      results.push_back(bench::run_phase(make_config(o, true, redis)));
    }
  } catch (const bench::run_error& e) {
    if (!results.empty())
      print(o, results);
    std::cerr << "sessiond-bench: " << e.what() << std::endl;
    return 1;
  }
  print(o, results);
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  // Subcommands measure one part of the engine alone; without one, the HTTP load generator.
  if (argc > 1 && std::string(argv[1]) == "sync")
    return bench::run_sync_bench(std::vector<std::string>(argv + 2, argv + argc));
  if (argc > 1 && std::string(argv[1]) == "retention")
    return bench::run_retention_bench(std::vector<std::string>(argv + 2, argv + argc));
  if (argc > 1 && std::string(argv[1]) == "upsert")
    return bench::run_upsert_bench(std::vector<std::string>(argv + 2, argv + argc));
  if (argc > 1 && std::string(argv[1]) == "queue")
    return bench::run_queue_bench(std::vector<std::string>(argv + 2, argv + argc));
  if (argc > 1 && std::string(argv[1]) == "cache")
    return bench::run_cache_bench(std::vector<std::string>(argv + 2, argv + argc));
  if (argc > 1 && std::string(argv[1]) == "floor")
    return bench::run_floor_server(std::vector<std::string>(argv + 2, argv + argc));
  bench::options o;
  bool help = false;
  try {
    o = bench::parse_options(std::vector<std::string>(argv + 1, argv + argc), help);
  } catch (const bench::usage_error& e) {
    std::cerr << "sessiond-bench: " << e.what() << std::endl;
    return 2;
  }
  if (help) {
    std::cout << bench::help_text();
    return 0;
  }
  std::uint64_t kb = 0;
  if (o.rss_pid > 0 && !bench::read_rss_kb(o.rss_pid, kb)) {
    std::cerr << "sessiond-bench: --rss-pid " << o.rss_pid
              << ": no such process (or no VmRSS in /proc/" << o.rss_pid << "/status)" << std::endl;
    return 2;
  }
  return run(o);
}
