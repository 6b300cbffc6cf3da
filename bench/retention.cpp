// `sessiond-bench retention`: builds user_session in a scratch schema with INSERT … SELECT
// generate_series (eligible rows first, in created_at order, as a table filled over time would
// hold them), runs postgres::run_retention on it exactly as the retention actor does, and prints
// rows/s, the longest single batch transaction and the batch-time distribution; then checks
// that exactly the eligible rows are gone.
#include "bench/retention.hpp"

#include "adapters/postgres/client.hpp"
#include "adapters/postgres/migrate.hpp"
#include "adapters/postgres/retention.hpp"
#include "bench/options.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <optional>
#include <stdexcept>
#include <thread>

namespace sessiond::bench {

namespace {

using steady = std::chrono::steady_clock;

struct retention_args {
  std::string postgres = "postgresql://postgres@127.0.0.1:5432/sessiond";
  std::int64_t rows = 2000000;
  std::int64_t eligible = 1000000;
  std::int64_t batch = 5000;
  std::int64_t pause_ms = 0;
  std::int64_t sweep_pages = 4096;
  std::int64_t data_bytes = 256;
  bool explain = false;
  bool keep = false;
  bool checkpoint = true;    ///< --no-checkpoint: run right in the build's checkpoint storm
  bool sample_waits = false; ///< --sample-waits: where the run's backend spends its time
  bool dry_run = false;      ///< --dry-run: count only
};

constexpr const char* help =
    R"(usage: sessiond-bench retention [--postgres URL] [--rows N] [--eligible N]
       [--batch-size N] [--pause-ms MS] [--sweep-pages N] [--data-bytes N]
       [--no-checkpoint] [--sample-waits] [--dry-run] [--explain] [--keep]

Builds user_session with --rows rows in a scratch schema of its own (migrations applied), of
which --eligible meet the retention criterion (inactive, ended, idle > 60 days, oldest first);
of the others, 2/3 are active and 1/3 ended within the last 60 days (in the retention index,
not eligible). Then one retention run as the actor does it (postgres::run_retention, batches
of --batch-size, --pause-ms between them; default 0, the actor's is retention.pause_ms) and
prints the rate in rows/s, the longest single batch transaction and the distribution of batch
times, and checks that exactly the eligible rows are gone.

  --no-checkpoint  skip the CHECKPOINT before the run: run while the checkpoints that the
                   build's WAL set off are still writing (a worst case for batch times)
  --sample-waits   sample the run's wait events every 5 ms from another connection
  --dry-run        a dry run: count, delete nothing (the check then expects every row left)
  --explain        print EXPLAIN (ANALYZE, BUFFERS) of the first batch first (rolled back)
  --keep           keep the scratch schema (its name is printed); it is dropped otherwise
)";

retention_args parse(const std::vector<std::string>& a) {
  retention_args s;
  for (std::size_t i = 0; i < a.size(); ++i) {
    auto next = [&]() -> const std::string& {
      if (i + 1 >= a.size())
        throw std::runtime_error(a[i] + " needs a value");
      return a[++i];
    };
    auto number = [&](std::int64_t min) {
      const std::string& flag = a[i];
      return static_cast<std::int64_t>(
          parse_whole(flag, next(), static_cast<std::uint64_t>(min), 1000000000000));
    };
    if (a[i] == "--postgres")
      s.postgres = next();
    else if (a[i] == "--rows")
      s.rows = number(1);
    else if (a[i] == "--eligible")
      s.eligible = number(0);
    else if (a[i] == "--batch-size")
      s.batch = number(1);
    else if (a[i] == "--pause-ms")
      s.pause_ms = number(0);
    else if (a[i] == "--sweep-pages")
      s.sweep_pages = number(1);
    else if (a[i] == "--data-bytes")
      s.data_bytes = number(2);
    else if (a[i] == "--explain")
      s.explain = true;
    else if (a[i] == "--keep")
      s.keep = true;
    else if (a[i] == "--no-checkpoint")
      s.checkpoint = false;
    else if (a[i] == "--sample-waits")
      s.sample_waits = true;
    else if (a[i] == "--dry-run")
      s.dry_run = true;
    else
      throw std::runtime_error("unknown option " + a[i]);
  }
  if (s.eligible > s.rows)
    throw std::runtime_error("--eligible must not exceed --rows");
  return s;
}

double seconds_since(steady::time_point t0) {
  return std::chrono::duration<double>(steady::now() - t0).count();
}

std::int64_t scalar(postgres::client& c, const std::string& sql) {
  auto r = c.exec(sql);
  return std::stoll(r.rows.at(0).at(0).value_or("0"));
}

/// Eligible rows e1…eN (created 400 to 61 days ago, in that order), then the others, created
/// over the last 59 days: 2 of 3 active, 1 of 3 ended (REVOKED) but idle less than 60 days.
void build(postgres::client& c, const retention_args& a) {
  c.exec_params(R"(
insert into user_session (session_id, user_id, data, version, status, is_active, created_at,
                          last_activity_at, expires_at, updated_at, revoked_at)
select 'e' || g, 'u' || (g % 100000),
  jsonb_build_object('p', left(repeat(md5(g::text), 1 + $2::int / 32), $2::int - 9)), 3,
  case when g % 2 = 0 then 'REVOKED' else 'EXPIRED' end, false,
  now() - interval '400 days' + (g::float8 / $1::bigint) * interval '339 days',
  now() - interval '400 days' + (g::float8 / $1::bigint) * interval '339 days' + interval '5 min',
  now() - interval '400 days' + (g::float8 / $1::bigint) * interval '339 days' + interval '65 min',
  now() - interval '61 days', null
from generate_series(1, $1::bigint) g)",
                {std::to_string(a.eligible), std::to_string(a.data_bytes)});
  c.exec_params(R"(
insert into user_session (session_id, user_id, data, version, status, is_active, created_at,
                          last_activity_at, expires_at, updated_at, revoked_at)
select 'k' || g, 'u' || (g % 100000),
  jsonb_build_object('p', left(repeat(md5(g::text), 1 + $2::int / 32), $2::int - 9)), 3,
  case when g % 3 = 0 then 'REVOKED' else 'ACTIVE' end, g % 3 <> 0,
  now() - interval '59 days' + (g::float8 / $1::bigint) * interval '59 days',
  now() - interval '59 days' + (g::float8 / $1::bigint) * interval '59 days' + interval '5 min',
  case when g % 3 = 0 then now() - interval '1 min' else now() + interval '1 hour' end, now(),
  case when g % 3 = 0 then now() - interval '1 min' end
from generate_series(1, $1::bigint) g)",
                {std::to_string(a.rows - a.eligible), std::to_string(a.data_bytes)});
  c.exec("vacuum analyze user_session");
}

struct batch_stats {
  std::vector<double> range_ms, sweep_ms;
  void add(const postgres::retention_batch& b) {
    (b.sweep ? sweep_ms : range_ms).push_back(static_cast<double>(b.took.count()) / 1000.0);
  }
};

std::string describe(std::vector<double> v) {
  if (v.empty())
    return "none";
  std::sort(v.begin(), v.end());
  auto at = [&](double q) {
    return v[std::min(v.size() - 1, static_cast<std::size_t>(q * static_cast<double>(v.size())))];
  };
  auto slow = std::count_if(v.begin(), v.end(), [](double ms) { return ms > 100; });
  char buf[160];
  std::snprintf(buf, sizeof buf, "%zu, p50 %.1f ms, p99 %.1f ms, max %.1f ms, %zu over 100 ms",
                v.size(), at(0.5), at(0.99), v.back(), static_cast<std::size_t>(slow));
  return buf;
}

/// Samples the wait event of one backend every 5 ms from a connection of its own: where the
/// run's time goes (CPU, WAL writes and syncs, data file reads, locks).
class wait_sampler {
public:
  wait_sampler(postgres::client_options o, int pid) : opts_(std::move(o)), pid_(pid) {
    thread_ = std::thread([this] { loop(); });
  }
  ~wait_sampler() { stop(); }
  void stop() {
    done_ = true;
    if (thread_.joinable())
      thread_.join();
  }
  std::string describe() const {
    std::int64_t total = 0;
    for (const auto& [k, n] : counts_)
      total += n;
    if (total == 0)
      return "none";
    std::string out;
    for (const auto& [k, n] : counts_)
      if (n * 100 >= total) // the ones with at least 1%
        out += (out.empty() ? "" : ", ") + k + " " + std::to_string(n * 100 / total) + "%";
    return out.empty() ? "none" : out;
  }

private:
  void loop() {
    try {
      postgres::client c(opts_);
      while (!done_) {
        auto r = c.exec_params("select coalesce(wait_event_type || ':' || wait_event, 'CPU') "
                               "from pg_stat_activity where pid = $1 and state = 'active'",
                               {std::to_string(pid_)});
        if (!r.rows.empty())
          ++counts_[r.rows[0][0].value_or("?")];
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
    } catch (const std::exception& e) {
      counts_["sampler failed: " + std::string(e.what())] = 1;
    }
  }
  postgres::client_options opts_;
  int pid_;
  std::atomic<bool> done_{false};
  std::map<std::string, std::int64_t> counts_;
  std::thread thread_;
};

int run(const retention_args& a) {
  postgres::client_options o;
  o.url = a.postgres;
  o.statement_timeout = std::chrono::milliseconds(0);
  postgres::client admin(o);
  std::string schema = "bench_retention_" + std::to_string(::getpid());
  admin.exec("create schema " + schema);
  o.search_path = schema;
  postgres::client c(o);
  int rc = 1;
  try {
    postgres::apply_migrations(c, postgres::embedded_migrations());
    std::cerr << "sessiond-bench: building " << a.rows << " rows (" << a.eligible
              << " eligible) in schema " << schema << "\n";
    auto t0 = steady::now();
    build(c, a);
    std::printf(
        "build: %lld rows in %.1f s (%lld heap pages)\n", static_cast<long long>(a.rows),
        seconds_since(t0),
        static_cast<long long>(scalar(c, "select pg_relation_size('user_session') / 8192")));
    postgres::retention_params p;
    p.batch_size = a.batch;
    p.pause = std::chrono::milliseconds(a.pause_ms);
    p.max_rows_per_run = std::max<std::int64_t>(a.rows, 1);
    p.sweep_pages = a.sweep_pages;
    p.node_id = "sessiond-bench";
    p.dry_run = a.dry_run;
    if (a.explain)
      std::printf("EXPLAIN of the first batch (rolled back):\n%s\n",
                  postgres::explain_retention_batch(c, p).c_str());
    try {
      if (a.checkpoint)
        c.exec("checkpoint");
    } catch (const postgres::pg_error& e) {
      std::cerr << "sessiond-bench: no CHECKPOINT before the run (" << e.what() << ")\n";
    }
    auto lsn0 = c.exec("select pg_current_wal_lsn()::text").rows.at(0).at(0).value_or("0/0");
    batch_stats stats;
    postgres::retention_hooks hooks;
    hooks.on_batch = [&](const postgres::retention_batch& b) { stats.add(b); };
    std::optional<wait_sampler> waits;
    if (a.sample_waits)
      waits.emplace(o, c.backend_pid());
    auto r = postgres::run_retention(c, p, hooks);
    if (waits)
      waits->stop();
    auto wal = scalar(c, "select pg_wal_lsn_diff(pg_current_wal_lsn(), '" + lsn0 + "')::bigint");
    std::printf("WAL written during the run: %.0f MB\n", static_cast<double>(wal) / 1048576.0);
    double secs = static_cast<double>(r.duration_ms) / 1000.0;
    std::printf("run: status %s, %s %lld rows in %.2f s = %.0f rows/s (batch size %lld, "
                "pause %lld ms)%s%s\n",
                postgres::to_string(r.status), a.dry_run ? "counted" : "deleted",
                static_cast<long long>(r.rows_deleted), secs,
                secs > 0 ? static_cast<double>(r.rows_deleted) / secs : 0.0,
                static_cast<long long>(a.batch), static_cast<long long>(a.pause_ms),
                r.error.empty() ? "" : ", error: ", r.error.c_str());
    std::printf("longest single batch transaction: %.1f ms\n",
                static_cast<double>(r.longest_batch_us) / 1000.0);
    std::printf("range batches: %s\nsweep slices: %s\n", describe(stats.range_ms).c_str(),
                describe(stats.sweep_ms).c_str());
    auto left_eligible = scalar(c, "select count(*) from user_session where session_id like 'e%'");
    auto left_others = scalar(c, "select count(*) from user_session where session_id like 'k%'");
    bool ok = r.status == postgres::retention_status::ran &&
              left_eligible == (a.dry_run ? a.eligible : 0) && left_others == a.rows - a.eligible &&
              r.rows_deleted == a.eligible;
    if (waits)
      std::printf("retention backend's wait events, sampled every 5 ms: %s\n",
                  waits->describe().c_str());
    std::printf("check: %lld eligible rows left, %lld of %lld others left: %s\n",
                static_cast<long long>(left_eligible), static_cast<long long>(left_others),
                static_cast<long long>(a.rows - a.eligible), ok ? "ok" : "WRONG");
    rc = ok ? 0 : 1;
  } catch (const std::exception& e) {
    std::cerr << "sessiond-bench: " << e.what() << std::endl;
  }
  if (a.keep)
    std::cerr << "sessiond-bench: kept schema " << schema << "\n";
  else
    admin.exec("drop schema " + schema + " cascade");
  return rc;
}

} // namespace

int run_retention_bench(const std::vector<std::string>& args) {
  retention_args a;
  try {
    if (std::find(args.begin(), args.end(), "--help") != args.end()) {
      std::cout << help;
      return 0;
    }
    a = parse(args);
  } catch (const std::exception& e) {
    std::cerr << "sessiond-bench retention: " << e.what() << "\n" << help;
    return 2;
  }
  try {
    return run(a);
  } catch (const std::exception& e) {
    std::cerr << "sessiond-bench retention: " << e.what() << std::endl;
    return 1;
  }
}

} // namespace sessiond::bench
