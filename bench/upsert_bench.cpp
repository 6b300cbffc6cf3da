// `sessiond-bench upsert`: the write-behind's PostgreSQL statement alone, on one connection, by
// the CPU time of its server process per row. The end-to-end sync bench shares two cores among
// the bench, Redis and PostgreSQL and its rates move ±30% from run to run; one backend's own CPU
// time moves less (10–20% a round here), and the variants run in turn every round, so their
// medians can be compared.
//
// Variants, each run in turn in every round (the same rows, the table emptied and checkpointed
// before each insert pass):
//   copy           postgres::bulk_upsert_sessions, what the sync engine runs: binary COPY into a
//                  temporary table, then INSERT … SELECT … ON CONFLICT
//   text-arrays    postgres::upsert_sessions, the per-save path's statement: unnest() over
//                  text-format array parameters
//   binary-arrays  unnest() over binary-format array parameters, one per column (an alternative
//                  kept here, not in the engine: it measured slower than copy)
#include "bench/upsert_bench.hpp"

#include "adapters/postgres/bulk_upsert.hpp"
#include "adapters/postgres/migrate.hpp"
#include "adapters/postgres/sessions.hpp"
#include "bench/options.hpp"
#include "bench/proc_cpu.hpp"

#include <libpq-fe.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <stdexcept>

namespace sessiond::bench {

namespace {

struct upsert_args {
  std::string postgres = "postgresql://postgres@127.0.0.1:5432/sessiond";
  std::size_t rows = 200000;
  std::size_t batch = 2000;
  std::size_t value_bytes = 512;
  std::size_t rounds = 4;
  std::vector<std::string> variants{"copy", "text-arrays", "binary-arrays"};
};

constexpr const char* help =
    R"(usage: sessiond-bench upsert [--postgres URL] [--rows N] [--batch-size N]
       [--value-bytes N] [--rounds N] [--variants copy,text-arrays,binary-arrays]

The write-behind's PostgreSQL statement alone, in a scratch schema of its own, on one
connection: --rows sessions written in batches of --batch-size as inserts into an empty table,
then again as updates, by each variant in turn, --rounds times. Prints rows/s and the CPU time of
the connection's server process per row (read from /proc: PostgreSQL must run on this machine),
each round and the medians.
  copy           the sync engine's upsert (binary COPY into a temporary table, one INSERT)
  text-arrays    the per-save upsert (unnest over text-format arrays)
  binary-arrays  unnest over binary-format arrays (measured alternative, not in the engine)
)";

upsert_args parse(const std::vector<std::string>& a) {
  upsert_args s;
  for (std::size_t i = 0; i < a.size(); ++i) {
    auto next = [&]() -> const std::string& {
      if (i + 1 >= a.size())
        throw usage_error(a[i] + " needs a value");
      return a[++i];
    };
    if (a[i] == "--postgres")
      s.postgres = next();
    else if (a[i] == "--rows")
      s.rows = parse_whole("--rows", next(), 1, 100000000);
    else if (a[i] == "--batch-size")
      s.batch = parse_whole("--batch-size", next(), 1, 100000);
    else if (a[i] == "--value-bytes")
      s.value_bytes = parse_whole("--value-bytes", next(), 2, 64 << 20);
    else if (a[i] == "--rounds")
      s.rounds = parse_whole("--rounds", next(), 1, 1000);
    else if (a[i] == "--variants") {
      s.variants.clear();
      const std::string& list = next();
      for (std::size_t at = 0; at <= list.size();) {
        auto comma = std::min(list.find(',', at), list.size());
        s.variants.push_back(list.substr(at, comma - at));
        at = comma + 1;
      }
      for (const auto& v : s.variants)
        if (v != "copy" && v != "text-arrays" && v != "binary-arrays")
          throw usage_error("--variants: unknown variant '" + v + "'");
    } else if (a[i] == "--help") {
      std::cout << help;
      std::exit(0);
    } else
      throw usage_error("unknown argument " + a[i]);
  }
  return s;
}

// --- the binary-arrays variant ------------------------------------------------------------------

const std::string binary_upsert_sql = R"(
insert into user_session (session_id, user_id, data, version, status, is_active, created_at,
                          last_activity_at, expires_at, updated_at, revoked_at)
select s.session_id, s.user_id, s.data, s.version, s.status, s.is_active, s.created_at,
       s.last_activity_at, s.expires_at, now(), s.revoked_at
from unnest($1::text[], $2::text[], $3::jsonb[], $4::int8[], $5::text[], $6::bool[],
            $7::timestamptz[], $8::timestamptz[], $9::timestamptz[], $10::timestamptz[])
       as s(session_id, user_id, data, version, status, is_active, created_at, last_activity_at,
            expires_at, revoked_at)
)" + std::string(postgres::upsert_fence_sql);

/// One column as a one-dimensional array in PostgreSQL's binary format (what array_recv reads),
/// integers in network byte order.
class array_writer {
public:
  array_writer(std::uint32_t element_oid, std::size_t count) {
    put32(1); // dimensions
    put32(0); // has NULLs: set by null()
    put32(element_oid);
    put32(static_cast<std::uint32_t>(count));
    put32(1); // lower bound
  }
  void bytes(std::string_view prefix, std::string_view s) {
    put32(static_cast<std::uint32_t>(prefix.size() + s.size()));
    out_.append(prefix).append(s);
  }
  void int8(std::int64_t v) {
    put32(8);
    put32(static_cast<std::uint32_t>(static_cast<std::uint64_t>(v) >> 32));
    put32(static_cast<std::uint32_t>(v));
  }
  /// timestamptz: microseconds since 2000-01-01T00:00:00Z.
  void timestamp(std::int64_t unix_ms) { int8((unix_ms - 946684800000) * 1000); }
  void null() {
    put32(0xffffffffu);
    out_[7] = '\1';
  }
  const std::string& str() const { return out_; }

private:
  void put32(std::uint32_t v) {
    char b[4] = {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
                 static_cast<char>(v)};
    out_.append(b, 4);
  }
  std::string out_;
};

using pg_conn = std::unique_ptr<PGconn, void (*)(PGconn*)>;
using pg_result = std::unique_ptr<PGresult, void (*)(PGresult*)>;

pg_result run(PGconn* c, const char* sql) {
  pg_result r(PQexec(c, sql), PQclear);
  auto st = PQresultStatus(r.get());
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
    throw std::runtime_error(std::string("PostgreSQL: ") + PQerrorMessage(c));
  return r;
}

/// Writes `rows` as bulk_upsert_sessions() does (same fence, order and transaction), with the
/// batch sent as ten binary-format array parameters. Returns the rows written.
std::size_t binary_upsert(PGconn* c, const std::vector<postgres::session_row>& rows) {
  auto batch = postgres::dedupe_batch(rows);
  const auto n = batch.size();
  array_writer id(25, n), user(25, n), data(3802, n), version(20, n), status(25, n), active(16, n),
      created(1184, n), activity(1184, n), expires(1184, n), revoked(1184, n);
  for (const auto* r : batch) {
    postgres::validate_row(*r);
    id.bytes({}, r->session_id);
    user.bytes({}, r->user_id);
    data.bytes("\1", r->data); // jsonb: format version 1, then the text
    version.int8(r->version);
    status.bytes({}, r->status);
    active.bytes({}, r->is_active ? "\1" : std::string_view("\0", 1));
    created.timestamp(r->created_at_ms);
    activity.timestamp(r->last_activity_at_ms);
    expires.timestamp(r->expires_at_ms);
    if (r->revoked_at_ms == 0)
      revoked.null();
    else
      revoked.timestamp(r->revoked_at_ms);
  }
  const array_writer* columns[] = {&id,     &user,    &data,     &version, &status,
                                   &active, &created, &activity, &expires, &revoked};
  const Oid types[] = {1009, 1009, 3807, 1016, 1009, 1000, 1185, 1185, 1185, 1185};
  const char* values[10];
  int lengths[10], formats[10];
  for (int i = 0; i < 10; ++i) {
    values[i] = columns[i]->str().data();
    lengths[i] = static_cast<int>(columns[i]->str().size());
    formats[i] = 1;
  }
  run(c, "begin isolation level repeatable read");
  pg_result r(PQexecParams(c, binary_upsert_sql.c_str(), 10, types, values, lengths, formats, 0),
              PQclear);
  if (PQresultStatus(r.get()) != PGRES_TUPLES_OK) {
    std::string why = PQerrorMessage(c);
    run(c, "rollback");
    throw std::runtime_error("PostgreSQL: " + why);
  }
  run(c, "commit");
  return static_cast<std::size_t>(PQntuples(r.get()));
}

// --- the runs -----------------------------------------------------------------------------------

std::vector<postgres::session_row> make_rows(const upsert_args& a) {
  std::vector<postgres::session_row> rows(a.rows);
  const std::int64_t now = 1760000000000;
  std::string data =
      "{\"v\":\"" + std::string(a.value_bytes > 8 ? a.value_bytes - 8 : 0, 'x') + "\"}";
  for (std::size_t i = 0; i < rows.size(); ++i) {
    char id[40];
    // Spread over the key space (a session id is random), distinct for every i < 2^32.
    std::snprintf(id, sizeof id, "%08x%08zx", static_cast<unsigned>(i * 2654435761u), i);
    auto& r = rows[i];
    r.session_id = id;
    r.user_id = "user-" + std::to_string(i % 50000);
    r.data = data;
    r.created_at_ms = r.last_activity_at_ms = now;
    r.expires_at_ms = now + 86400000;
  }
  return rows;
}

struct measured {
  double rows_s = 0, cpu_us_per_row = 0;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

} // namespace

int run_upsert_bench(const std::vector<std::string>& args) {
  upsert_args a;
  try {
    a = parse(args);
  } catch (const std::exception& e) {
    std::cerr << "sessiond-bench upsert: " << e.what() << "\n";
    return 2;
  }
  const std::string schema = "bench_upsert_" + std::to_string(getpid());
  try {
    postgres::client_options o;
    o.url = a.postgres;
    o.search_path = schema;
    o.statement_timeout = std::chrono::minutes(10);
    postgres::client pg(o);
    postgres::create_schema(pg, schema);
    postgres::apply_migrations(pg, postgres::embedded_migrations());
    pg_conn raw(PQconnectdb(a.postgres.c_str()), PQfinish);
    if (PQstatus(raw.get()) != CONNECTION_OK)
      throw std::runtime_error(std::string("PostgreSQL: ") + PQerrorMessage(raw.get()));
    run(raw.get(), ("set search_path = " + schema).c_str());
    auto rows = make_rows(a);
    std::cout << "upsert, " << a.rows << " sessions of " << a.value_bytes << " bytes, batches of "
              << a.batch << ", one connection; CPU = the server process's, per row:\n";
    std::map<std::string, std::vector<double>> cpu, rate; // "variant pass" → per round
    for (std::size_t round = 1; round <= a.rounds; ++round)
      for (const auto& variant : a.variants) {
        std::function<std::size_t(const std::vector<postgres::session_row>&)> write;
        long backend = pg.backend_pid();
        if (variant == "copy")
          write = [&](const auto& b) { return postgres::bulk_upsert_sessions(pg, b); };
        else if (variant == "text-arrays")
          write = [&](const auto& b) { return postgres::upsert_sessions(pg, b); };
        else {
          write = [&](const auto& b) { return binary_upsert(raw.get(), b); };
          backend = PQbackendPID(raw.get());
        }
        pg.exec("truncate user_session");
        pg.exec("checkpoint");
        for (const char* pass : {"insert", "update"}) {
          for (auto& r : rows)
            r.version = pass[0] == 'i' ? 1 : 2;
          double cpu0 = proc_cpu_s(backend, false);
          auto start = std::chrono::steady_clock::now();
          std::size_t written = 0;
          std::vector<postgres::session_row> batch;
          for (std::size_t from = 0; from < rows.size(); from += a.batch) {
            batch.assign(rows.begin() + static_cast<std::ptrdiff_t>(from),
                         rows.begin() +
                             static_cast<std::ptrdiff_t>(std::min(from + a.batch, rows.size())));
            written += write(batch);
          }
          double s =
              std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
          if (written != rows.size())
            throw std::runtime_error(variant + " " + pass + ": wrote " + std::to_string(written) +
                                     " of " + std::to_string(rows.size()) + " rows");
          measured m{static_cast<double>(written) / s,
                     (proc_cpu_s(backend, false) - cpu0) * 1e6 / static_cast<double>(written)};
          auto key = variant + " " + pass;
          cpu[key].push_back(m.cpu_us_per_row);
          rate[key].push_back(m.rows_s);
          std::printf("  round %zu %-14s %s: %7.0f rows/s, %5.2f us/row\n", round, variant.c_str(),
                      pass, m.rows_s, m.cpu_us_per_row);
          std::fflush(stdout);
        }
      }
    std::cout << "medians over " << a.rounds << " round(s):\n";
    for (const auto& variant : a.variants)
      for (const char* pass : {"insert", "update"}) {
        auto key = variant + " " + pass;
        std::printf("  %-14s %s: %7.0f rows/s, %5.2f us/row\n", variant.c_str(), pass,
                    median(rate[key]), median(cpu[key]));
      }
    pg.exec("drop schema " + schema + " cascade");
  } catch (const std::exception& e) {
    std::cerr << "sessiond-bench upsert: " << e.what() << "\n";
    return 1;
  }
  return 0;
}

} // namespace sessiond::bench
