// op_stats: the /v1/status rates and latencies from two snapshots.
#include "api/op_stats.hpp"

#include <catch2/catch.hpp>

#include <thread>
#include <vector>

using sessiond::api::between;
using sessiond::api::op_stats;

TEST_CASE("rates and latencies come from the difference of two snapshots") {
  op_stats s;
  s.record(true, 100);
  auto before = s.read();
  for (int i = 0; i < 98; ++i)
    s.record(i % 2 == 0, 300); // bucket [256, 512) µs
  s.record(false, 5000);       // [4096, 8192)
  s.record(false, 5000);
  auto w = between(before, s.read(), 2.0);
  CHECK(w.ops_per_s == Approx(50.0));
  CHECK(w.writes_per_s == Approx(24.5));
  CHECK(w.latency_avg_ms == Approx((98 * 300 + 2 * 5000) / 100.0 / 1000.0));
  CHECK(w.latency_p99_ms == Approx(8.192)); // 99th of 100 falls in the slow bucket
  auto none = between(s.read(), s.read(), 1.0);
  CHECK(none.ops_per_s == 0);
  CHECK(none.latency_p99_ms == 0);
}

TEST_CASE("concurrent records from many threads sum exactly") {
  op_stats s;
  std::vector<std::thread> ts;
  for (int t = 0; t < 8; ++t)
    ts.emplace_back([&] {
      for (int i = 0; i < 10000; ++i)
        s.record(true, 1);
    });
  for (auto& t : ts)
    t.join();
  auto r = s.read();
  CHECK(r.ops == 80000);
  CHECK(r.writes == 80000);
  CHECK(r.micros == 80000);
}
