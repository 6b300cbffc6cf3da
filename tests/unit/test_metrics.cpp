// Unit tests of the metrics registry: text exposition, label sets, name rules, concurrent
// updates, process metrics from /proc (real and fake trees) and promtool's verdict.
#include "adapters/metrics/process_metrics.hpp"
#include "adapters/metrics/registry.hpp"
#include "adapters/metrics/text_serializer.hpp"

#include <catch2/catch.hpp>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using namespace sessiond::metrics;
namespace fs = std::filesystem;

namespace {

/// Value of the sample named `name` (no labels) in the registry, NaN when absent.
double value_of(const Registry& r, const std::string& name) {
  for (const auto& f : r.Collect()) {
    if (f.name != name || f.metric.size() != 1)
      continue;
    return f.type == MetricType::Counter ? f.metric[0].counter.value : f.metric[0].gauge.value;
  }
  return std::numeric_limits<double>::quiet_NaN();
}

/// A fresh directory under the temp dir, removed with the object.
struct temp_dir {
  fs::path path;
  explicit temp_dir(const std::string& tag) {
    static int n = 0;
    path = fs::temp_directory_path() / ("sessiond-test-metrics-" + tag + "-" +
                                        std::to_string(getpid()) + "-" + std::to_string(++n));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

void write_file(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << text;
}

/// Runs `command` through /bin/sh; its exit status, -1 when it did not exit normally.
int run_shell(const std::string& command) {
  int rc = std::system(command.c_str());
  return rc != -1 && WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// Exit status of `promtool check metrics` on `exposition`; its output goes to `output`.
int promtool_check(const std::string& exposition, std::string& output) {
  temp_dir dir("promtool");
  write_file(dir.path / "metrics.txt", exposition);
  int rc = run_shell("promtool check metrics < '" + (dir.path / "metrics.txt").string() + "' > '" +
                     (dir.path / "out.txt").string() + "' 2>&1");
  output = read_text(dir.path / "out.txt");
  return rc;
}

} // namespace

// --- exposition ----------------------------------------------------------------------------

TEST_CASE("a counter without labels is exposed as HELP, TYPE and one bare sample") {
  Registry r;
  auto& c = BuildCounter().Name("sessiond_saves_total").Help("Session saves.").Register(r).Add({});
  c.Increment();
  c.Increment();
  c.Increment(2.5);
  CHECK(serialize(r) == "# HELP sessiond_saves_total Session saves.\n"
                        "# TYPE sessiond_saves_total counter\n"
                        "sessiond_saves_total 4.5\n");
}

TEST_CASE("a labelled counter writes constant labels first, then its own sorted, in Add order") {
  Registry r;
  auto& fam = BuildCounter()
                  .Name("sessiond_requests_total")
                  .Help("HTTP requests answered.")
                  .Labels({{"node", "a"}})
                  .Register(r);
  auto& ok = fam.Add({{"route", "/v1/sessions"}, {"status", "200"}});
  auto& missing = fam.Add({{"status", "404"}, {"route", "/v1/sessions"}});
  fam.Add({{"route", "/v1/jobs"}, {"status", "500"}}); // added last, sorts first: written last
  ok.Increment();
  ok.Increment();
  missing.Increment();
  CHECK(serialize(r) ==
        "# HELP sessiond_requests_total HTTP requests answered.\n"
        "# TYPE sessiond_requests_total counter\n"
        "sessiond_requests_total{node=\"a\",route=\"/v1/sessions\",status=\"200\"} 2\n"
        "sessiond_requests_total{node=\"a\",route=\"/v1/sessions\",status=\"404\"} 1\n"
        "sessiond_requests_total{node=\"a\",route=\"/v1/jobs\",status=\"500\"} 0\n");
}

TEST_CASE("a counter ignores negative and NaN increments") {
  Counter c;
  c.Increment(3);
  c.Increment(-1);
  c.Increment(std::numeric_limits<double>::quiet_NaN());
  c.Increment(0);
  CHECK(c.Value() == 3);
}

TEST_CASE("gauges go up and down, and are set, in the exposition") {
  Registry r;
  auto& fam = BuildGauge().Name("sessiond_inflight_requests").Help("In flight.").Register(r);
  auto& a = fam.Add({{"shard", "0"}});
  auto& b = fam.Add({{"shard", "1"}});
  auto& c = fam.Add({{"shard", "2"}});
  a.Set(5);
  a.Increment();
  a.Decrement(3);
  b.Set(-2.5);
  b.Increment(0.25);
  c.Decrement();
  c.Increment(10);
  c.Decrement(0.5);
  CHECK(serialize(r) == "# HELP sessiond_inflight_requests In flight.\n"
                        "# TYPE sessiond_inflight_requests gauge\n"
                        "sessiond_inflight_requests{shard=\"0\"} 3\n"
                        "sessiond_inflight_requests{shard=\"1\"} -2.25\n"
                        "sessiond_inflight_requests{shard=\"2\"} 8.5\n");
}

TEST_CASE("a gauge writes +Inf, -Inf and NaN as Prometheus spells them") {
  Registry r;
  auto& fam = BuildGauge().Name("sessiond_odd_values").Help("Odd values.").Register(r);
  fam.Add({{"v", "pinf"}}).Set(std::numeric_limits<double>::infinity());
  fam.Add({{"v", "minf"}}).Set(-std::numeric_limits<double>::infinity());
  fam.Add({{"v", "nan"}}).Set(std::numeric_limits<double>::quiet_NaN());
  fam.Add({{"v", "tiny"}}).Set(1e-7);
  CHECK(serialize(r) == "# HELP sessiond_odd_values Odd values.\n"
                        "# TYPE sessiond_odd_values gauge\n"
                        "sessiond_odd_values{v=\"pinf\"} +Inf\n"
                        "sessiond_odd_values{v=\"minf\"} -Inf\n"
                        "sessiond_odd_values{v=\"nan\"} NaN\n"
                        "sessiond_odd_values{v=\"tiny\"} 1e-07\n");
}

TEST_CASE("SetToCurrentTime sets a gauge to the Unix time in whole seconds") {
  Gauge g;
  auto before = std::chrono::duration_cast<std::chrono::seconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count();
  g.SetToCurrentTime();
  CHECK(g.Value() >= static_cast<double>(before));
  CHECK(g.Value() <= static_cast<double>(before + 2));
  CHECK(g.Value() == std::trunc(g.Value()));
}

TEST_CASE("backslash, quote and newline are escaped in label values; backslash and newline "
          "in help") {
  Registry r;
  auto& fam = BuildCounter()
                  .Name("sessiond_escapes_total")
                  .Help("Help with \\ backslash,\nnewline and \"quotes\".")
                  .Register(r);
  fam.Add({{"path", "C:\\dir\\\"x\"\nnext"}}).Increment();
  CHECK(serialize(r) ==
        R"x(# HELP sessiond_escapes_total Help with \\ backslash,\nnewline and "quotes".
# TYPE sessiond_escapes_total counter
sessiond_escapes_total{path="C:\\dir\\\"x\"\nnext"} 1
)x");
}

TEST_CASE("a histogram writes cumulative buckets up to +Inf, then its sum and count") {
  Registry r;
  auto& h = BuildHistogram()
                .Name("sessiond_save_duration_seconds")
                .Help("Time to save a session.")
                .Labels({{"node", "a"}})
                .Register(r)
                .Add({{"backend", "redis"}}, Histogram::BucketBoundaries{0.005, 0.25, 1});
  // Binary fractions, so the sum is exact whatever the order of additions.
  for (double v : {0.0009765625, 0.25, 0.375, 0.5, 2.0, 4.0})
    h.Observe(v);
  CHECK(serialize(r) ==
        "# HELP sessiond_save_duration_seconds Time to save a session.\n"
        "# TYPE sessiond_save_duration_seconds histogram\n"
        "sessiond_save_duration_seconds_bucket{node=\"a\",backend=\"redis\",le=\"0.005\"} 1\n"
        "sessiond_save_duration_seconds_bucket{node=\"a\",backend=\"redis\",le=\"0.25\"} 2\n"
        "sessiond_save_duration_seconds_bucket{node=\"a\",backend=\"redis\",le=\"1\"} 4\n"
        "sessiond_save_duration_seconds_bucket{node=\"a\",backend=\"redis\",le=\"+Inf\"} 6\n"
        "sessiond_save_duration_seconds_sum{node=\"a\",backend=\"redis\"} 7.1259765625\n"
        "sessiond_save_duration_seconds_count{node=\"a\",backend=\"redis\"} 6\n");
}

TEST_CASE("a histogram without labels and without observations writes le alone and zeros") {
  Registry r;
  BuildHistogram()
      .Name("sessiond_batch_rows")
      .Help("Rows per batch.")
      .Register(r)
      .Add({}, Histogram::BucketBoundaries{10, 100});
  CHECK(serialize(r) == "# HELP sessiond_batch_rows Rows per batch.\n"
                        "# TYPE sessiond_batch_rows histogram\n"
                        "sessiond_batch_rows_bucket{le=\"10\"} 0\n"
                        "sessiond_batch_rows_bucket{le=\"100\"} 0\n"
                        "sessiond_batch_rows_bucket{le=\"+Inf\"} 0\n"
                        "sessiond_batch_rows_sum 0\n"
                        "sessiond_batch_rows_count 0\n");
}

TEST_CASE("a histogram puts NaN in +Inf, drops a trailing +Inf bound and takes pre-bucketed "
          "observations") {
  Histogram h({1, 2, std::numeric_limits<double>::infinity()});
  h.Observe(std::numeric_limits<double>::quiet_NaN());
  h.ObserveMultiple({1, 0, 2}, 10);
  auto m = h.Collect().histogram;
  REQUIRE(m.bucket.size() == 3);
  CHECK(m.bucket[0].cumulative_count == 1);
  CHECK(m.bucket[1].cumulative_count == 1);
  CHECK(m.bucket[2].cumulative_count == 4);
  CHECK(std::isinf(m.bucket[2].upper_bound));
  CHECK(m.sample_count == 4);
  CHECK(std::isnan(m.sample_sum));
  CHECK_THROWS_AS(h.ObserveMultiple({1, 2}, 1), std::invalid_argument);
}

TEST_CASE("an empty family writes HELP and TYPE only, and families keep registration order") {
  Registry r;
  BuildGauge().Name("sessiond_up").Help("1 when serving.").Register(r).Add({}).Set(1);
  BuildCounter().Name("sessiond_cache_hits_total").Help("Cache hits.").Register(r);
  BuildCounter().Name("sessiond_a_total").Help("Sorts first, registered last.").Register(r);
  CHECK(serialize(r) == "# HELP sessiond_up 1 when serving.\n"
                        "# TYPE sessiond_up gauge\n"
                        "sessiond_up 1\n"
                        "# HELP sessiond_cache_hits_total Cache hits.\n"
                        "# TYPE sessiond_cache_hits_total counter\n"
                        "# HELP sessiond_a_total Sorts first, registered last.\n"
                        "# TYPE sessiond_a_total counter\n");
}

TEST_CASE("numbers are written like Prometheus clients write them") {
  CHECK(format_value(0) == "0");
  CHECK(format_value(-0.0) == "0");
  CHECK(format_value(1) == "1");
  CHECK(format_value(-1) == "-1");
  CHECK(format_value(1e6) == "1000000");
  CHECK(format_value(1e15) == "1000000000000000");
  CHECK(format_value(9007199254740992.0) == "9007199254740992");
  CHECK(format_value(1e21) == "1e+21");
  CHECK(format_value(0.1) == "0.1");
  CHECK(format_value(0.005) == "0.005");
  CHECK(format_value(-2.25) == "-2.25");
  CHECK(format_value(0.1 + 0.2) == "0.30000000000000004");
  CHECK(format_value(1.5e-10) == "1.5e-10");
  CHECK(format_value(std::numeric_limits<double>::infinity()) == "+Inf");
  CHECK(format_value(-std::numeric_limits<double>::infinity()) == "-Inf");
  CHECK(format_value(std::numeric_limits<double>::quiet_NaN()) == "NaN");
  for (double v : {123.456, 1.0 / 3, 6.02214076e23, -1e-300, 4.9e-324, 1.7976931348623157e308})
    CHECK(std::strtod(format_value(v).c_str(), nullptr) == v);
}

TEST_CASE("the content type is text format 0.0.4") {
  CHECK(text_content_type == "text/plain; version=0.0.4; charset=utf-8");
}

// --- label sets, registration and removal ----------------------------------------------------

TEST_CASE("adding the same label set twice returns the same metric, in any order") {
  Registry r;
  auto& fam = BuildCounter().Name("sessiond_x_total").Help("x").Register(r);
  auto& a = fam.Add({{"a", "1"}, {"b", "2"}});
  a.Increment();
  CHECK(&fam.Add({{"b", "2"}, {"a", "1"}}) == &a);
  CHECK(&fam.Add({{"a", "1"}, {"b", "3"}}) != &a);
  CHECK(&fam.Add({{"a", "1"}}) != &a);
  for (int i = 0; i < 1000; ++i) // growth elsewhere in the family never moves a metric
    fam.Add({{"i", std::to_string(i)}});
  CHECK(&fam.Add({{"a", "1"}, {"b", "2"}}) == &a);
  CHECK(a.Value() == 1);

  auto& hist = BuildHistogram().Name("sessiond_h_seconds").Help("h").Register(r);
  auto& h = hist.Add({}, Histogram::BucketBoundaries{1});
  CHECK(&hist.Add({}, Histogram::BucketBoundaries{1, 2, 3}) == &h); // later bounds ignored
}

TEST_CASE("registering a family again merges with the same one, or throws when told to") {
  Registry merge;
  auto& a = BuildCounter().Name("sessiond_x_total").Help("x").Labels({{"n", "1"}}).Register(merge);
  CHECK(&BuildCounter().Name("sessiond_x_total").Help("x").Labels({{"n", "1"}}).Register(merge) ==
        &a);
  CHECK_THROWS_AS(BuildCounter().Name("sessiond_x_total").Labels({{"n", "2"}}).Register(merge),
                  std::invalid_argument);
  CHECK_THROWS_AS(BuildGauge().Name("sessiond_x_total").Labels({{"n", "1"}}).Register(merge),
                  std::invalid_argument);

  Registry strict(Registry::InsertBehavior::Throw);
  BuildGauge().Name("sessiond_y").Help("y").Register(strict);
  CHECK_THROWS_AS(BuildGauge().Name("sessiond_y").Help("y").Register(strict),
                  std::invalid_argument);
}

TEST_CASE("a family whose sample names clash with another family's is refused") {
  Registry r;
  BuildHistogram().Name("sessiond_wait_seconds").Help("w").Register(r);
  CHECK_THROWS_AS(BuildCounter().Name("sessiond_wait_seconds_count").Register(r),
                  std::invalid_argument);
  CHECK_THROWS_AS(BuildGauge().Name("sessiond_wait_seconds_bucket").Register(r),
                  std::invalid_argument);
  BuildGauge().Name("sessiond_rows_sum").Help("r").Register(r);
  CHECK_THROWS_AS(BuildHistogram().Name("sessiond_rows").Register(r), std::invalid_argument);
  CHECK_NOTHROW(BuildCounter().Name("sessiond_wait_seconds_total").Help("t").Register(r));
}

TEST_CASE("invalid metric and label names throw at Register and Add time") {
  for (const char* good : {"a", "_a", ":a", "sessiond:rate5m", "A_b_1", "sessiond_x_total"})
    CHECK(is_valid_metric_name(good));
  for (const char* bad : {"", "1a", "a-b", "a b", "__a", "caf\xC3\xA9", "a.b"})
    CHECK_FALSE(is_valid_metric_name(bad));
  for (const char* good : {"a", "_a", "route", "A1", "_"})
    CHECK(is_valid_label_name(good));
  for (const char* bad : {"", "1a", "a:b", "__name__", "a-b", "a b"})
    CHECK_FALSE(is_valid_label_name(bad));

  Registry r;
  CHECK_THROWS_AS(BuildCounter().Name("1abc").Help("x").Register(r), std::invalid_argument);
  CHECK_THROWS_AS(BuildCounter().Name("__sessiond_total").Register(r), std::invalid_argument);
  CHECK_THROWS_AS(BuildGauge().Name("sessiond_g").Labels({{"bad-label", "v"}}).Register(r),
                  std::invalid_argument);
  CHECK_THROWS_AS(BuildHistogram().Name("sessiond_h").Labels({{"le", "1"}}).Register(r),
                  std::invalid_argument);
  CHECK(serialize(r).empty()); // nothing half-registered

  auto& fam = BuildCounter().Name("sessiond_c_total").Help("c").Labels({{"node", "a"}}).Register(r);
  CHECK_THROWS_AS(fam.Add({{"__reserved", "v"}}), std::invalid_argument);
  CHECK_THROWS_AS(fam.Add({{"route", "/"}, {"9lives", "v"}}), std::invalid_argument);
  CHECK_THROWS_AS(fam.Add({{"node", "b"}}), std::invalid_argument); // repeats a constant label
  CHECK_FALSE(fam.Has({{"__reserved", "v"}}));
  CHECK_NOTHROW(fam.Add({{"le", "1"}})); // only histograms reserve `le`

  auto& hist = BuildHistogram().Name("sessiond_h_seconds").Help("h").Register(r);
  CHECK_THROWS_AS(hist.Add({{"le", "1"}}, Histogram::BucketBoundaries{1}), std::invalid_argument);
  CHECK_THROWS_AS(hist.Add({}, Histogram::BucketBoundaries{1, 1}), std::invalid_argument);
  CHECK_THROWS_AS(hist.Add({}, Histogram::BucketBoundaries{2, 1}), std::invalid_argument);
  CHECK_THROWS_AS(hist.Add({}, Histogram::BucketBoundaries{std::nan("")}), std::invalid_argument);
}

TEST_CASE("a removed metric or family leaves the exposition") {
  Registry r;
  auto& fam = BuildGauge().Name("sessiond_g").Help("g").Register(r);
  auto& a = fam.Add({{"k", "a"}});
  fam.Add({{"k", "b"}}).Set(2);
  a.Set(1);
  fam.Remove(&a);
  CHECK_FALSE(fam.Has({{"k", "a"}}));
  CHECK(fam.Has({{"k", "b"}}));
  CHECK(serialize(r) == "# HELP sessiond_g g\n# TYPE sessiond_g gauge\nsessiond_g{k=\"b\"} 2\n");
  CHECK(fam.Add({{"k", "a"}}).Value() == 0); // a fresh metric

  Registry other;
  CHECK_FALSE(other.Remove(fam));
  CHECK(r.Remove(fam));
  CHECK(serialize(r).empty());
  // The name is free again.
  CHECK_NOTHROW(BuildCounter().Name("sessiond_g").Help("g").Register(r));
}

// --- concurrency -----------------------------------------------------------------------------

TEST_CASE("8 threads x 100000 updates on one counter, gauge and histogram sum exactly") {
  constexpr int threads = 8;
  constexpr int per_thread = 100000;
  Registry r;
  auto& counter = BuildCounter().Name("sessiond_c_total").Help("c").Register(r).Add({});
  auto& halves = BuildCounter().Name("sessiond_h_total").Help("h").Register(r).Add({});
  auto& gauge = BuildGauge().Name("sessiond_g").Help("g").Register(r).Add({});
  auto& hist = BuildHistogram()
                   .Name("sessiond_d_seconds")
                   .Help("d")
                   .Register(r)
                   .Add({}, Histogram::BucketBoundaries{0.25, 1, 2});
  const double values[] = {0.125, 0.25, 0.75, 3.0}; // 25000 of each per thread

  std::atomic<bool> go{false};
  std::atomic<int> running{threads};
  std::vector<std::thread> pool;
  pool.reserve(threads);
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      while (!go.load())
        std::this_thread::yield();
      for (int i = 0; i < per_thread; ++i) {
        counter.Increment();
        halves.Increment(0.5);
        gauge.Increment(t % 2 == 0 ? 2.0 : -1.0);
        hist.Observe(values[(t + i) % 4]);
      }
      running.fetch_sub(1);
    });
  }
  // A scrape running meanwhile only reads; the count never runs ahead of the +Inf bucket.
  std::thread scraper([&] {
    while (!go.load())
      std::this_thread::yield();
    while (running.load() > 0)
      (void)serialize(r);
  });
  go.store(true);
  for (auto& th : pool)
    th.join();
  scraper.join();

  CHECK(counter.Value() == 800000);
  CHECK(halves.Value() == 400000);
  CHECK(gauge.Value() == 4 * per_thread * 2.0 - 4 * per_thread * 1.0);
  auto h = hist.Collect().histogram;
  REQUIRE(h.bucket.size() == 4);
  CHECK(h.bucket[0].cumulative_count == 400000); // 0.125, 0.25
  CHECK(h.bucket[1].cumulative_count == 600000); // + 0.75
  CHECK(h.bucket[2].cumulative_count == 600000);
  CHECK(h.bucket[3].cumulative_count == 800000); // + 3.0
  CHECK(h.sample_count == 800000);
  CHECK(h.sample_sum == 200000 * (0.125 + 0.25 + 0.75 + 3.0));
}

TEST_CASE("threads adding the same label sets concurrently all get the same metrics") {
  Registry r;
  auto& fam = BuildCounter().Name("sessiond_c_total").Help("c").Register(r);
  constexpr int threads = 8;
  std::vector<std::vector<Counter*>> seen(threads);
  std::vector<std::thread> pool;
  pool.reserve(threads);
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      for (int i = 0; i < 1000; ++i) {
        auto& c = fam.Add({{"k", std::to_string(i % 16)}});
        c.Increment();
        seen[t].push_back(&c);
      }
    });
  }
  for (auto& th : pool)
    th.join();
  for (int t = 1; t < threads; ++t)
    CHECK(seen[t] == seen[0]);
  auto families = r.Collect();
  REQUIRE(families.size() == 1);
  CHECK(families[0].metric.size() == 16);
  double total = 0;
  for (const auto& m : families[0].metric)
    total += m.counter.value;
  CHECK(total == threads * 1000);
}

// --- process metrics -------------------------------------------------------------------------

TEST_CASE("process metrics of this process are present and plausible") {
  Registry r;
  process_metrics pm(r);
  REQUIRE(pm.update() == errc::ok);
  auto text = serialize(r);
  for (const char* line :
       {"# TYPE process_cpu_seconds_total counter\n",
        "# TYPE process_resident_memory_bytes gauge\n",
        "# TYPE process_virtual_memory_bytes gauge\n", "# TYPE process_open_fds gauge\n",
        "# TYPE process_max_fds gauge\n", "# TYPE process_start_time_seconds gauge\n"})
    CHECK(text.find(line) != std::string::npos);

  double rss = value_of(r, "process_resident_memory_bytes");
  CHECK(rss > 0);
  CHECK(rss < 64.0 * 1024 * 1024 * 1024);
  CHECK(value_of(r, "process_virtual_memory_bytes") >= rss);

  double now_s =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  double start_s = value_of(r, "process_start_time_seconds");
  CHECK(start_s > now_s - 86400);
  CHECK(start_s <= now_s + 2); // btime is whole seconds

  rlimit lim{};
  REQUIRE(getrlimit(RLIMIT_NOFILE, &lim) == 0);
  if (lim.rlim_cur != RLIM_INFINITY)
    CHECK(value_of(r, "process_max_fds") == static_cast<double>(lim.rlim_cur));
  double fds = value_of(r, "process_open_fds");
  CHECK(fds >= 1);
  int extra = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  REQUIRE(extra >= 0);
  REQUIRE(pm.update() == errc::ok);
  CHECK(value_of(r, "process_open_fds") == fds + 1);
  ::close(extra);

  // Burn CPU until the kernel's tick count moves (a tick is 10 ms at most USER_HZ).
  double cpu0 = value_of(r, "process_cpu_seconds_total");
  CHECK(cpu0 >= 0);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  volatile double sink = 0;
  while (value_of(r, "process_cpu_seconds_total") <= cpu0 &&
         std::chrono::steady_clock::now() < deadline) {
    for (int i = 0; i < 1000000; ++i)
      sink = sink + std::sqrt(static_cast<double>(i));
    pm.update();
  }
  CHECK(value_of(r, "process_cpu_seconds_total") > cpu0);
}

TEST_CASE("process metrics are read exactly from a fake /proc, whatever the command name") {
  temp_dir proc("proc");
  auto stat_line = [](int utime) {
    // Fields 3..24 and a few more; the command name holds spaces and parentheses.
    return "4242 (sessiond (x) y) S 1 2 3 4 5 6 7 8 9 10 " + std::to_string(utime) +
           " 50 0 0 20 0 4 0 12345 104857600 2560 18446744073709551615 1 2 3\n";
  };
  write_file(proc.path / "self" / "stat", stat_line(250));
  write_file(proc.path / "stat", "cpu  1 2 3 4\nintr 5\nbtime 1700000000\nprocesses 77\n");
  write_file(proc.path / "self" / "limits",
             "Limit                     Soft Limit           Hard Limit           Units     \n"
             "Max cpu time              unlimited            unlimited            seconds   \n"
             "Max open files            1024                 524288               files     \n");
  for (int fd = 0; fd < 5; ++fd)
    write_file(proc.path / "self" / "fd" / std::to_string(fd), "");

  Registry r;
  process_metrics pm(r, proc.path.string());
  REQUIRE(pm.update() == errc::ok);
  const double tick_s = 1.0 / static_cast<double>(sysconf(_SC_CLK_TCK));
  const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
  CHECK(value_of(r, "process_cpu_seconds_total") == 300 * tick_s);
  CHECK(value_of(r, "process_resident_memory_bytes") == 2560 * page);
  CHECK(value_of(r, "process_virtual_memory_bytes") == 104857600);
  CHECK(value_of(r, "process_start_time_seconds") == 1700000000 + 12345 * tick_s);
  CHECK(value_of(r, "process_max_fds") == 1024);
  CHECK(value_of(r, "process_open_fds") == 5);

  // The counter follows /proc's total exactly (it is advanced by the difference).
  write_file(proc.path / "self" / "stat", stat_line(400));
  REQUIRE(pm.update() == errc::ok);
  CHECK(value_of(r, "process_cpu_seconds_total") == 450 * tick_s);

  // A second process_metrics on the same registry shares the families.
  process_metrics again(r, proc.path.string());
  CHECK(r.Collect().size() == 6);

  write_file(proc.path / "self" / "limits",
             "Max open files            unlimited  unlimited  files\n");
  REQUIRE(pm.update() == errc::ok);
  CHECK(std::isinf(value_of(r, "process_max_fds")));
}

TEST_CASE("unreadable or malformed /proc files are reported and leave the rest updated") {
  Registry r;
  process_metrics missing(r, "/nonexistent/proc");
  CHECK(missing.update() == errc::unreadable);

  temp_dir proc("bad");
  write_file(proc.path / "self" / "stat", "4242 (truncated) S 1 2 3\n");
  write_file(proc.path / "stat", "btime 1700000000\n");
  write_file(proc.path / "self" / "limits", "Max open files 2048 4096 files\n");
  fs::create_directories(proc.path / "self" / "fd");
  Registry r2;
  process_metrics pm(r2, proc.path.string());
  CHECK(pm.update() == errc::malformed);
  CHECK(value_of(r2, "process_max_fds") == 2048);
  CHECK(value_of(r2, "process_open_fds") == 0);
  CHECK(value_of(r2, "process_resident_memory_bytes") == 0);
}

TEST_CASE("every errc value has a name") {
  std::set<std::string> names;
  for (auto e : {errc::ok, errc::unreadable, errc::malformed}) {
    std::string name = to_string(e);
    CHECK(name != "unknown");
    names.insert(name);
  }
  CHECK(names.size() == 3);
}

// --- promtool --------------------------------------------------------------------------------

TEST_CASE("promtool check metrics accepts an exposition with every metric type") {
  if (run_shell("command -v promtool >/dev/null 2>&1") != 0) {
    WARN("promtool is not on PATH (Debian package prometheus): promtool check skipped");
    return;
  }
  Registry r;
  auto& requests = BuildCounter()
                       .Name("sessiond_requests_total")
                       .Help("HTTP requests answered, by route and status.")
                       .Labels({{"node", "a"}})
                       .Register(r);
  requests.Add({{"route", "/v1/sessions"}, {"status", "200"}}).Increment(41);
  requests.Add({{"route", "quote\" back\\slash\nnewline"}, {"status", "400"}}).Increment();
  BuildCounter().Name("sessiond_unused_total").Help("Never incremented.").Register(r);
  auto& gauges = BuildGauge().Name("sessiond_inflight_requests").Help("In flight.").Register(r);
  gauges.Add({{"shard", "0"}}).Set(-2.5);
  gauges.Add({{"shard", "1"}}).Set(std::numeric_limits<double>::quiet_NaN());
  gauges.Add({{"shard", "2"}}).Set(std::numeric_limits<double>::infinity());
  auto& h = BuildHistogram()
                .Name("sessiond_save_duration_seconds")
                .Help("Time to save a session,\nwith \\ escapes.")
                .Register(r)
                .Add({{"backend", "redis"}},
                     Histogram::BucketBoundaries{0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5});
  for (double v : {0.0004, 0.003, 0.02, 0.7, 12.0})
    h.Observe(v);
  process_metrics pm(r);
  REQUIRE(pm.update() == errc::ok);

  std::string output;
  auto exposition = serialize(r);
  INFO(exposition);
  int rc = promtool_check(exposition, output);
  INFO(output);
  CHECK(rc == 0);

  // The check can fail: promtool rejects a counter named without _total.
  Registry bad;
  BuildCounter().Name("sessiond_requests").Help("Not a _total name.").Register(bad).Add({});
  CHECK(promtool_check(serialize(bad), output) != 0);
}
