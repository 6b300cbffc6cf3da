// `sessiond-bench sync`: (1) sync throughput: N dirty 512-byte sessions written into Redis with
// the node's own key layout, drained by sync_engine into an empty table, then all saved again
// and drained as updates; the same rows through one INSERT … SELECT … ON CONFLICT statement in
// the same run as the ceiling. (2) sync lag: saves at a fixed rate through the write script,
// synced every interval; lag = row's updated_at - the save's acknowledgement time.
#include "bench/sync_bench.hpp"

#include "actors/redis_scripts.hpp"
#include "actors/sync_engine.hpp"
#include "adapters/postgres/bulk_upsert.hpp"
#include "adapters/postgres/migrate.hpp"
#include "adapters/redis/blocking.hpp"
#include "adapters/redis/client.hpp"
#include "bench/options.hpp"
#include "bench/proc_cpu.hpp"
#include "model/key_layout.hpp"
#include "model/shard_for.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <iostream>
#include <iterator>
#include <map>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>

namespace sessiond::bench {

namespace {

using steady = std::chrono::steady_clock;

struct sync_args {
  std::string redis = "redis://127.0.0.1:6379/0";
  std::string postgres = "postgresql://postgres@127.0.0.1:5432/sessiond";
  std::size_t rows = 200000;
  std::size_t batch = 2000; ///< sync.batch_size
  std::size_t value_bytes = 512;
  std::size_t sets = 16;
  std::size_t connections = 2;
  double rate = 10000;     ///< lag phase: saves per second
  double lag_seconds = 10; ///< lag phase duration
  std::int64_t interval_ms = 1000;
  std::size_t sessions = 0; ///< lag phase: saves cycle over this many sessions; 0: each new
  bool lag_only = false;
  long postmaster_pid = 0; ///< when set, PostgreSQL's CPU time is reported too
};

constexpr const char* help = R"(usage: sessiond-bench sync [--redis URL] [--postgres URL] [--rows N]
       [--batch-size N] [--connections N] [--value-bytes N] [--rate SAVES_PER_S] [--lag-seconds S]
       [--interval-ms MS] [--sessions N] [--lag-only] [--postmaster-pid PID]

Measures the write-behind alone, in a scratch schema and key prefix of its own:
  throughput  --rows dirty sessions drained into an empty table (inserts), then all saved again
              and drained (updates), against one INSERT ... SELECT ... ON CONFLICT statement
              over the same rows in the same run, and the sync's PostgreSQL writes alone (the
              same rows from memory through its upsert, no Redis: the sync's floor)
  lag         saves (the node's write script) at --rate for --lag-seconds, cycling over
              --sessions ids (0: every save a new session), synced every --interval-ms (start
              to start) as the sync actor does; p50/p99 of (row's updated_at - save
              acknowledged), and SQL statements per 1,000 saves (the per-save upsert: 1,000)
CPU seconds of the bench (the sync runs in it), of Redis (INFO cpu) and, given the postmaster's
--postmaster-pid, of PostgreSQL (it and its children) are printed for each throughput step.
)";

sync_args parse(const std::vector<std::string>& a) {
  sync_args s;
  for (std::size_t i = 0; i < a.size(); ++i) {
    auto next = [&]() -> const std::string& {
      if (i + 1 >= a.size())
        throw std::runtime_error(a[i] + " needs a value");
      return a[++i];
    };
    if (a[i] == "--redis")
      s.redis = next();
    else if (a[i] == "--postgres")
      s.postgres = next();
    else if (a[i] == "--rows")
      s.rows = parse_whole("--rows", next(), 1, 100000000);
    else if (a[i] == "--batch-size")
      s.batch = parse_whole("--batch-size", next(), 1, 100000);
    else if (a[i] == "--value-bytes")
      s.value_bytes = parse_whole("--value-bytes", next(), 2, 64 << 20);
    else if (a[i] == "--connections")
      s.connections = parse_whole("--connections", next(), 1, 64);
    else if (a[i] == "--rate")
      s.rate = parse_number("--rate", next());
    else if (a[i] == "--lag-seconds")
      s.lag_seconds = parse_number("--lag-seconds", next());
    else if (a[i] == "--interval-ms")
      s.interval_ms =
          static_cast<std::int64_t>(parse_whole("--interval-ms", next(), 100, 86400000));
    else if (a[i] == "--sessions")
      s.sessions = parse_whole("--sessions", next(), 0, 100000000);
    else if (a[i] == "--lag-only")
      s.lag_only = true;
    else if (a[i] == "--postmaster-pid")
      s.postmaster_pid = static_cast<long>(parse_whole("--postmaster-pid", next(), 1, 1 << 30));
    else if (a[i] == "--help") {
      std::cout << help;
      std::exit(0);
    } else
      throw std::runtime_error("unknown argument " + a[i]);
  }
  if (!(s.rate > 0) || !(s.lag_seconds > 0))
    throw usage_error("--rate and --lag-seconds must be above 0");
  return s;
}

/// Blocking helper around the async client, pipelining up to `window` commands.
class redis_pipe {
public:
  explicit redis_pipe(const std::string& url) {
    redis::client_options o;
    std::string err;
    if (!redis::parse_url(url, o, err))
      throw std::runtime_error("--redis: " + err);
    o.command_timeout = std::chrono::seconds(30);
    client_ = std::make_unique<redis::client>(io_, o);
    client_->start();
    thread_ = std::thread([this] { io_.run(); });
    for (int i = 0; i < 200 && !client_->connected(); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (!client_->connected())
      throw std::runtime_error("cannot connect to " + url);
  }
  ~redis_pipe() {
    client_->stop();
    work_.reset();
    io_.stop();
    thread_.join();
  }
  redis::client& client() { return *client_; }

  /// Sends every command, at most 512 unanswered at a time; waits for all.
  void pipeline(std::vector<std::vector<std::string>> cmds) {
    std::atomic<std::size_t> open{0};
    std::promise<void> drained;
    std::atomic<std::size_t> left{cmds.size()};
    if (cmds.empty())
      return;
    for (auto& c : cmds) {
      while (open.load() > 512)
        std::this_thread::sleep_for(std::chrono::microseconds(50));
      ++open;
      client_->command(0, std::move(c), [&](redis::errc, redis::reply&&) {
        --open;
        if (--left == 0)
          drained.set_value();
      });
    }
    drained.get_future().wait();
  }

private:
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_{
      io_.get_executor()};
  std::unique_ptr<redis::client> client_;
  std::thread thread_;
};

std::string payload(std::size_t bytes, std::mt19937_64& rng) {
  static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  std::string p = "{\"p\":\"";
  while (p.size() + 2 < bytes)
    p += alphabet[rng() % 36];
  return p + "\"}";
}

/// Writes `n` dirty sessions at version `version` the way the write script leaves them.
void fill(redis_pipe& r, const std::string& prefix, std::size_t n, std::size_t sets,
          std::size_t value_bytes, int version, std::int64_t now_ms) {
  std::mt19937_64 rng(42 + version);
  std::vector<std::vector<std::string>> cmds;
  cmds.reserve(2 * n);
  auto ex = std::to_string(now_ms + 3600000);
  for (std::size_t i = 0; i < n; ++i) {
    auto id = "b" + std::to_string(i);
    model::key_layout layout{prefix};
    cmds.push_back({"HSET", layout.session(id),
                    "v",    std::to_string(version),
                    "u",    "user" + std::to_string(i % 1000),
                    "st",   "A",
                    "ca",   std::to_string(now_ms),
                    "la",   std::to_string(now_ms),
                    "ex",   ex,
                    "ttl",  "3600",
                    "d",    payload(value_bytes, rng),
                    "t",    std::to_string(now_ms)});
    cmds.push_back({"ZADD", layout.dirty(model::partition_of(id)), std::to_string(now_ms), id});
  }
  r.pipeline(std::move(cmds));
}

double seconds_since(steady::time_point t) {
  return std::chrono::duration<double>(steady::now() - t).count();
}

postgres::client_options pg_options(const sync_args& a, const std::string& schema) {
  postgres::client_options o;
  o.url = a.postgres;
  o.search_path = schema;
  o.statement_timeout = std::chrono::minutes(10);
  return o;
}

/// CPU seconds used so far by the bench, Redis and (with --postmaster-pid) PostgreSQL: the
/// postmaster, its live children, and the children that exited.
struct cpu_times {
  double bench = 0, redis = 0, postgres = 0;
};

cpu_times cpu_now(redis_pipe& r, long postmaster) {
  cpu_times t;
  rusage self{};
  getrusage(RUSAGE_SELF, &self);
  t.bench = static_cast<double>(self.ru_utime.tv_sec + self.ru_stime.tv_sec) +
            static_cast<double>(self.ru_utime.tv_usec + self.ru_stime.tv_usec) / 1e6;
  auto info = redis::command_wait(r.client(), 0, {"INFO", "cpu"}, std::chrono::seconds(5));
  std::istringstream lines(info.value.str);
  for (std::string line; std::getline(lines, line);)
    for (const char* key : {"used_cpu_sys:", "used_cpu_user:"})
      if (line.rfind(key, 0) == 0)
        t.redis += std::stod(line.substr(std::strlen(key)));
  if (postmaster > 0) {
    t.postgres = proc_cpu_s(postmaster, true);
    for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
      auto name = entry.path().filename().string();
      if (name.find_first_not_of("0123456789") == std::string::npos &&
          parent_pid(std::stol(name)) == postmaster)
        t.postgres += proc_cpu_s(std::stol(name), false);
    }
  }
  return t;
}

cpu_times operator-(const cpu_times& a, const cpu_times& b) {
  return {a.bench - b.bench, a.redis - b.redis, a.postgres - b.postgres};
}

struct throughput {
  double sync_rows_s = 0, statement_rows_s = 0;
  double sync_s = 0;                  ///< the sync's wall time
  double postgres_s = 0, redis_s = 0; ///< what its workers waited for, summed over workers
  double rows = 0, statement_rows = 0;
  cpu_times sync_cpu, statement_cpu;
  double alone_rows_s = 0, alone_rows = 0; ///< the sync's PostgreSQL writes alone
  cpu_times alone_cpu;
};

/// The rows of `staging` as the sync engine hands them to bulk_upsert_sessions, versions moved
/// up by `bump`.
std::vector<postgres::session_row> staged_rows(postgres::client& pg, std::int64_t bump) {
  auto res = pg.exec(std::string("select ") + postgres::session_row_columns + " from staging u");
  std::vector<postgres::session_row> rows;
  rows.reserve(res.rows.size());
  for (const auto& f : res.rows) {
    rows.push_back(postgres::parse_session_row(f));
    rows.back().version += bump;
  }
  return rows;
}

/// The floor of the sync on PostgreSQL's side: `rows` written by bulk_upsert_sessions (the
/// engine's upsert) in batches of --batch-size on --connections connections, with no Redis read
/// before and no ack after. Returns the rows written.
std::size_t write_alone(const sync_args& a, const std::string& schema,
                        const std::vector<postgres::session_row>& rows) {
  std::atomic<std::size_t> next{0}, written{0};
  std::vector<std::thread> workers;
  std::vector<std::exception_ptr> errors(a.connections);
  for (std::size_t w = 0; w < a.connections; ++w)
    workers.emplace_back([&, w] {
      try {
        postgres::client c(pg_options(a, schema));
        std::vector<postgres::session_row> batch;
        for (;;) {
          std::size_t from = next.fetch_add(a.batch);
          if (from >= rows.size())
            break;
          batch.assign(rows.begin() + static_cast<std::ptrdiff_t>(from),
                       rows.begin() +
                           static_cast<std::ptrdiff_t>(std::min(from + a.batch, rows.size())));
          written += postgres::bulk_upsert_sessions(c, batch);
        }
      } catch (...) {
        errors[w] = std::current_exception();
      }
    });
  for (auto& t : workers)
    t.join();
  for (auto& e : errors)
    if (e)
      std::rethrow_exception(e);
  return written;
}

/// One pass: sync_engine drains the dirty sets; then the same rows through one statement.
throughput pass(const sync_args& a, redis_pipe& r, postgres::client& pg, actors::sync_engine& eng,
                const std::string& schema, bool updates) {
  throughput t;
  auto cpu = cpu_now(r, a.postmaster_pid);
  auto start = steady::now();
  auto counts = eng.run();
  t.sync_s = seconds_since(start);
  t.sync_cpu = cpu_now(r, a.postmaster_pid) - cpu;
  t.rows = static_cast<double>(counts.written);
  t.sync_rows_s = static_cast<double>(counts.written) / t.sync_s;
  t.postgres_s = static_cast<double>(counts.postgres_us) / 1e6;
  t.redis_s = static_cast<double>(counts.redis_wait_us) / 1e6;
  // The ceiling: the same rows (copied aside), one INSERT … SELECT … ON CONFLICT.
  pg.exec("drop table if exists staging; create table staging as select * from user_session");
  if (updates)
    pg.exec("update staging set version = version + 1");
  else
    pg.exec("truncate user_session");
  pg.exec("vacuum analyze user_session");
  pg.exec("checkpoint");
  cpu = cpu_now(r, a.postmaster_pid);
  start = steady::now();
  auto res = pg.exec(
      "insert into user_session select * from staging on conflict (session_id) do update set "
      "user_id = excluded.user_id, data = excluded.data, version = excluded.version, "
      "status = excluded.status, is_active = excluded.is_active, created_at = excluded.created_at, "
      "last_activity_at = excluded.last_activity_at, expires_at = excluded.expires_at, "
      "updated_at = now(), revoked_at = excluded.revoked_at "
      "where user_session.version < excluded.version");
  t.statement_rows_s = static_cast<double>(res.affected) / seconds_since(start);
  t.statement_cpu = cpu_now(r, a.postmaster_pid) - cpu;
  t.statement_rows = static_cast<double>(res.affected);
  // The sync's PostgreSQL part alone: the same rows again, from memory, through the engine's
  // upsert (inserts into an emptied table; updates at one version above the statement's).
  auto rows = staged_rows(pg, updates ? 1 : 0);
  if (!updates)
    pg.exec("truncate user_session");
  pg.exec("vacuum analyze user_session");
  pg.exec("checkpoint");
  cpu = cpu_now(r, a.postmaster_pid);
  start = steady::now();
  auto n = write_alone(a, schema, rows);
  t.alone_rows_s = static_cast<double>(n) / seconds_since(start);
  t.alone_cpu = cpu_now(r, a.postmaster_pid) - cpu;
  t.alone_rows = static_cast<double>(n);
  return t;
}

/// The lag phase: a writer at a fixed rate, a sync loop, then the lag of every save's row.
void lag_phase(const sync_args& a, redis_pipe& r, const actors::redis_scripts& scripts,
               actors::sync_engine& eng, postgres::client& pg, const std::string& prefix) {
  std::mutex mtx;
  std::map<std::string, std::pair<int, std::int64_t>> acked; // id → (version, ack ms)
  std::atomic<bool> writing{true};
  std::atomic<std::uint64_t> saves{0}, statements{0}, rows{0};
  std::string data =
      "{\"p\":\"" + std::string(a.value_bytes > 10 ? a.value_bytes - 10 : 1, 'x') + "\"}";
  std::vector<double> run_ms; // the sync loop's runs, read after it stopped
  std::thread sync_loop([&] {
    // As the sync actor schedules: runs start every interval; one that overran it is followed at
    // once.
    auto next = steady::now() + std::chrono::milliseconds(a.interval_ms);
    while (writing) {
      std::this_thread::sleep_until(next);
      auto started = steady::now();
      auto c = eng.run();
      run_ms.push_back(1000.0 * seconds_since(started));
      statements += c.statements;
      rows += c.written;
      next = started + std::chrono::milliseconds(a.interval_ms);
    }
  });
  auto start = steady::now();
  auto total = static_cast<std::uint64_t>(a.rate * a.lag_seconds);
  std::atomic<std::size_t> open{0};
  for (std::uint64_t i = 0; i < total; ++i) {
    std::this_thread::sleep_until(
        start + std::chrono::microseconds(static_cast<std::int64_t>(i * 1e6 / a.rate)));
    while (open > 2000)
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    auto id = "lag" + std::to_string(a.sessions ? i % a.sessions : i);
    auto now = model::system_clock().now_ms();
    auto set = model::shard_for(id, a.sets);
    ++open;
    r.client().eval(set, scripts.write,
                    {model::key_layout{prefix}.session(id),
                     model::key_layout{prefix}.dirty(model::partition_of(id))},
                    {id, "lagger", data, std::to_string(now), "3600", "604800", "",
                     std::to_string(now + 3600000), "0"},
                    [&, id](redis::errc e, redis::reply&& rep) {
                      if (e == redis::errc::ok && rep.type == redis::reply::kind::array &&
                          rep.elements.size() > 1) {
                        auto ack = model::system_clock().now_ms();
                        std::lock_guard<std::mutex> guard{mtx};
                        acked[id] = {static_cast<int>(rep.elements[1].integer), ack};
                        ++saves;
                      }
                      --open;
                    });
  }
  while (open > 0)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  auto achieved = static_cast<double>(saves) / seconds_since(start);
  // Let the loop write the rest, then stop it.
  std::this_thread::sleep_for(std::chrono::milliseconds(2 * a.interval_ms + 500));
  writing = false;
  sync_loop.join();
  auto c = eng.run();
  statements += c.statements;
  rows += c.written;
  std::vector<double> lags;
  std::size_t missing = 0;
  auto res = pg.exec("select session_id, version, (extract(epoch from updated_at) * 1000)::bigint "
                     "from user_session where session_id like 'lag%'");
  std::map<std::string, std::pair<int, std::int64_t>> stored;
  for (auto& row : res.rows)
    stored[*row[0]] = {std::stoi(*row[1]), std::stoll(*row[2])};
  for (auto& [id, v] : acked) {
    auto it = stored.find(id);
    if (it == stored.end() || it->second.first < v.first) {
      ++missing;
      continue;
    }
    lags.push_back(static_cast<double>(it->second.second - v.second));
  }
  std::sort(lags.begin(), lags.end());
  auto pct = [&](double p) {
    return lags.empty()
               ? 0.0
               : lags[std::min(lags.size() - 1, static_cast<std::size_t>(p * lags.size()))];
  };
  std::cout << "sync lag, " << saves << " saves at " << static_cast<long>(achieved) << "/s over "
            << (a.sessions ? std::to_string(a.sessions) : std::string("new"))
            << " sessions, interval " << a.interval_ms << " ms:\n"
            << "  lag p50 " << pct(0.5) << " ms, p99 " << pct(0.99) << " ms, max "
            << (lags.empty() ? 0.0 : lags.back()) << " ms; " << missing
            << " saves not in PostgreSQL at their version\n"
            << "  " << rows << " rows written with " << statements << " statements: "
            << static_cast<double>(statements) * 1000.0 / static_cast<double>(saves)
            << " statements per 1,000 saves (per-save upsert: 1,000)\n";
  std::sort(run_ms.begin(), run_ms.end());
  if (!run_ms.empty())
    std::cout << "  " << run_ms.size() << " sync runs during the saves: median "
              << run_ms[run_ms.size() / 2] << " ms, longest " << run_ms.back() << " ms\n";
}

void print_throughput(const char* what, const throughput& t) {
  std::cout << "  " << what << ": sync " << static_cast<long>(t.sync_rows_s)
            << " rows/s, one statement " << static_cast<long>(t.statement_rows_s)
            << " rows/s, ratio " << t.sync_rows_s / t.statement_rows_s << "\n"
            << "    sync " << t.sync_s << " s; workers waited " << t.postgres_s
            << " s for PostgreSQL, " << t.redis_s << " s for Redis\n";
  auto cpu = [](const char* who, const cpu_times& c, double rows) {
    std::cout << "    CPU of " << who << ": bench " << c.bench << " s, Redis " << c.redis
              << " s, PostgreSQL " << c.postgres << " s; per row " << 1e6 * c.bench / rows << " / "
              << 1e6 * c.redis / rows << " / " << 1e6 * c.postgres / rows << " us\n";
  };
  cpu("the sync", t.sync_cpu, t.rows);
  cpu("the statement", t.statement_cpu, t.statement_rows);
  std::cout << "    the sync's PostgreSQL writes alone (same rows from memory, no Redis): "
            << static_cast<long>(t.alone_rows_s) << " rows/s, ratio "
            << t.alone_rows_s / t.statement_rows_s << "\n";
  cpu("those writes", t.alone_cpu, t.alone_rows);
}

} // namespace

int run_sync_bench(const std::vector<std::string>& args) {
  sync_args a;
  try {
    a = parse(args);
  } catch (const std::exception& e) {
    std::cerr << "sessiond-bench sync: " << e.what() << "\n";
    return 2;
  }
  auto tag = std::to_string(getpid());
  auto schema = "bench_sync_" + tag;
  auto prefix = "bench" + tag + ":";
  try {
    postgres::client pg(pg_options(a, schema));
    postgres::create_schema(pg, schema);
    postgres::apply_migrations(pg, postgres::embedded_migrations());
    redis_pipe r(a.redis);
    actors::redis_scripts scripts;
    actors::sync_settings st;
    st.prefix = prefix;
    st.first_hint = a.sets;
    st.batch_size = a.batch;
    st.node_id = "bench";
    st.redis_wait = std::chrono::seconds(30);
    st.connections = a.connections;
    actors::sync_engine eng(r.client(), scripts, pg_options(a, schema), st, model::system_clock());
    auto now = model::system_clock().now_ms();
    std::cout << "sync throughput, " << a.rows << " sessions of " << a.value_bytes
              << " bytes, batches of " << a.batch << ", " << a.connections << " connection(s):\n";
    if (!a.lag_only) {
      fill(r, prefix, a.rows, a.sets, a.value_bytes, 1, now);
      print_throughput("insert", pass(a, r, pg, eng, schema, false));
      pg.exec("truncate user_session; insert into user_session select * from staging");
      fill(r, prefix, a.rows, a.sets, a.value_bytes, 3, now);
      print_throughput("update", pass(a, r, pg, eng, schema, true));
    }
    lag_phase(a, r, scripts, eng, pg, prefix);
    pg.exec("drop schema " + schema + " cascade");
    r.pipeline({{"EVAL",
                 "for _, k in ipairs(redis.call('KEYS', ARGV[1] .. '*')) do "
                 "redis.call('DEL', k) end return 0",
                 "0", prefix}});
  } catch (const std::exception& e) {
    std::cerr << "sessiond-bench sync: " << e.what() << "\n";
    return 1;
  }
  return 0;
}

} // namespace sessiond::bench
