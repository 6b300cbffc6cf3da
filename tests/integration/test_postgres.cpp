// Integration tests of the PostgreSQL adapter (client, migrations, user_session upserts) against
// the PostgreSQL at POSTGRES_URL; each test works in a fresh schema that it drops at the end.
#include "adapters/postgres/client.hpp"
#include "adapters/postgres/migrate.hpp"
#include "adapters/postgres/sessions.hpp"
#include "tests/integration/pg_schema.hpp"

#include <arpa/inet.h>
#include <catch2/catch.hpp>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

using namespace sessiond::postgres;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
using steady = std::chrono::steady_clock;
using ms = std::chrono::milliseconds;

namespace {

const fs::path migrations_dir = SESSIOND_MIGRATIONS_DIR;

using sessiond::test::unique_name;

/// A schema of its own for one test, dropped (with everything in it) at the end.
struct scratch_schema : sessiond::test::pg_schema {
  scratch_schema() : pg_schema("t_") {}
  client connect() const { return client(options()); }
  /// A client with the schema migrated.
  client migrated() const {
    client c = connect();
    apply_migrations(c, migrations_dir);
    return c;
  }
};

/// A directory of its own, removed at the end; starts as a copy of migrations/.
struct scratch_dir {
  fs::path path = fs::temp_directory_path() / unique_name("sessiond_migrations_");
  scratch_dir() { fs::copy(migrations_dir, path); }
  ~scratch_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  void write(const std::string& name, const std::string& text) const {
    std::ofstream(path / name, std::ios::binary | std::ios::app) << text;
  }
};

std::string scalar(client& c, const std::string& sql, const std::vector<field>& params = {}) {
  result r = c.exec_params(sql, params);
  REQUIRE(r.rows.size() == 1);
  REQUIRE(r.rows[0].size() == 1);
  return r.rows[0][0].value_or("<NULL>");
}

long count(client& c, const std::string& sql, const std::vector<field>& params = {}) {
  return std::stol(scalar(c, sql, params));
}

/// Runs f() and returns the pg_error it throws; fails the test when it throws none.
template <class F>
pg_error thrown_by(F&& f) {
  try {
    f();
  } catch (const pg_error& e) {
    return e;
  }
  FAIL("no pg_error thrown");
  throw std::logic_error("unreachable");
}

const std::int64_t t0_ms = 1'700'000'000'123;

session_row make_row(const std::string& id, std::int64_t version, const std::string& data) {
  session_row r;
  r.session_id = id;
  r.user_id = "user-" + id;
  r.data = data;
  r.version = version;
  r.created_at_ms = t0_ms;
  r.last_activity_at_ms = t0_ms + version;
  r.expires_at_ms = t0_ms + 3'600'000;
  return r;
}

/// JSON string literal of s (quotes, backslashes and control characters escaped).
std::string json_quote(const std::string& s) {
  std::string out = "\"";
  for (char ch : s) {
    if (ch == '"' || ch == '\\')
      out += '\\';
    if (static_cast<unsigned char>(ch) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", ch);
      out += buf;
      continue;
    }
    out += ch;
  }
  return out + "\"";
}

/// A loopback TCP socket bound to a free port: listening (accepts, never answers) or not
/// (connections to it are refused). Closed at the end.
struct local_socket {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  std::uint16_t port = 0;
  explicit local_socket(bool listening) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
    port = ntohs(a.sin_port);
    if (listening)
      REQUIRE(::listen(fd, 4) == 0);
  }
  ~local_socket() { ::close(fd); }
  std::string url() const {
    return "postgresql://postgres@127.0.0.1:" + std::to_string(port) + "/x";
  }
};

} // namespace

// --- errors and literals (no server) -------------------------------------------------------

TEST_CASE("every errc value has its own name", "[postgres]") {
  std::vector<std::string> seen;
  for (int i = 0; i <= static_cast<int>(errc::migration_io); ++i) {
    std::string name = to_string(static_cast<errc>(i));
    CHECK(name != "unknown");
    CHECK(std::find(seen.begin(), seen.end(), name) == seen.end());
    seen.push_back(name);
  }
  CHECK(std::string(to_string(errc::connection_lost)) == "connection_lost");
  pg_error e(errc::server_error, "boom", "57014");
  CHECK(std::string(e.what()) == "server_error: [57014] boom");
  CHECK(e.sqlstate() == "57014");
}

TEST_CASE("array_literal quotes every element and escapes quotes and backslashes", "[postgres]") {
  CHECK(array_literal({}) == "{}");
  CHECK(array_literal({std::string("a"), std::nullopt, std::string("NULL"), std::string("")}) ==
        R"({"a",NULL,"NULL",""})");
  CHECK(array_literal({std::string(R"(q"b\c)"), std::string("{x,y}")}) == R"({"q\"b\\c","{x,y}"})");
  auto e = thrown_by([] { array_literal({std::string("a\0b", 3)}); });
  CHECK(e.code() == errc::invalid_argument);
}

// --- client -------------------------------------------------------------------------------

TEST_CASE("exec_params returns text fields, NULLs and the affected row count", "[postgres]") {
  scratch_schema s;
  client c = s.connect();
  result r = c.exec_params("select $1::text as a, $2::text as b, 42 as n",
                           {std::string("x y"), std::nullopt});
  REQUIRE(r.rows.size() == 1);
  CHECK(r.columns == std::vector<std::string>{"a", "b", "n"});
  CHECK(r.at(0, "a") == field("x y"));
  CHECK(r.at(0, "b") == std::nullopt);
  CHECK(r.at(0, "n") == field("42"));
  c.exec("create table t (i int)");
  CHECK(c.exec("insert into t select generate_series(1, 7)").affected == 7);
  CHECK(scalar(c, "select current_schema()") == s.name);
}

TEST_CASE("a server error carries the server's message and SQLSTATE", "[postgres]") {
  scratch_schema s;
  client c = s.connect();
  auto e = thrown_by([&] { c.exec("select * from no_such_table"); });
  CHECK(e.code() == errc::server_error);
  CHECK(e.sqlstate() == "42P01");
  CHECK_THAT(e.what(), Catch::Contains("no_such_table"));
  CHECK(scalar(c, "select 1") == "1"); // the connection stays usable
}

TEST_CASE("a transaction commits what its body did, and rolls back when the body throws",
          "[postgres]") {
  scratch_schema s;
  client c = s.connect();
  c.exec("create table t (i int)");
  int n = c.transaction([&] {
    c.exec("insert into t values (1)");
    return 5;
  });
  CHECK(n == 5);
  auto failing_body = [&] {
    c.exec("insert into t values (2)");
    throw std::runtime_error("body failed");
  };
  CHECK_THROWS_AS(c.transaction(failing_body), std::runtime_error);
  auto e = thrown_by([&] {
    c.transaction([&] {
      c.exec("insert into t values (3)");
      try {
        c.exec("select 1/0");
      } catch (const pg_error&) { // swallowed: COMMIT must still not pass as done
      }
    });
  });
  CHECK(e.code() == errc::server_error);
  CHECK_FALSE(c.in_transaction());
  CHECK(scalar(c, "select string_agg(i::text, ',') from t") == "1");
}

TEST_CASE("statement_timeout set at connect cancels a longer statement with 57014", "[postgres]") {
  scratch_schema s;
  client_options o = s.options();
  o.statement_timeout = 300ms;
  client c(o);
  CHECK(scalar(c, "show statement_timeout") == "300ms");
  auto start = steady::now();
  auto e = thrown_by([&] { c.exec("select pg_sleep(5)"); });
  auto took = steady::now() - start;
  CHECK(e.code() == errc::server_error);
  CHECK(e.sqlstate() == "57014");
  CHECK(took >= 250ms);
  CHECK(took < 3s);
  CHECK(scalar(c, "select 1") == "1");
}

TEST_CASE("connecting to a closed port fails fast with a clear message", "[postgres]") {
  local_socket closed(false);
  client_options o;
  o.url = closed.url();
  o.connect_timeout = 2000ms;
  auto start = steady::now();
  auto e = thrown_by([&] { client c(o); });
  CHECK(steady::now() - start < 1000ms);
  CHECK(e.code() == errc::connect_failed);
  CHECK_THAT(e.what(), Catch::Contains(std::to_string(closed.port)) &&
                           Catch::Contains("refused", Catch::CaseSensitive::No));
}

TEST_CASE("a server that accepts but never answers fails at connect_timeout", "[postgres]") {
  local_socket silent(true);
  client_options o;
  o.url = silent.url();
  o.connect_timeout = 700ms;
  auto start = steady::now();
  auto e = thrown_by([&] { client c(o); });
  auto took = steady::now() - start;
  CHECK(e.code() == errc::connect_timeout);
  CHECK(took >= 650ms);
  CHECK(took < 2000ms);
  CHECK_THAT(e.what(), Catch::Contains("700 ms") && Catch::Contains(std::to_string(silent.port)));
}

TEST_CASE("a bad URL is an invalid_argument, not a connect failure", "[postgres]") {
  client_options o;
  o.url = "postgresql://127.0.0.1:5432/db?no_such_option=1";
  CHECK(thrown_by([&] { client c(o); }).code() == errc::invalid_argument);
}

TEST_CASE("a broken connection is reported once, then the next call reconnects with the same "
          "settings",
          "[postgres]") {
  scratch_schema s;
  client_options o = s.options();
  o.statement_timeout = 4321ms;
  client c(o);
  int pid = c.backend_pid();
  REQUIRE(pid != 0);
  CHECK(scalar(s.admin, "select pg_terminate_backend($1, 5000)", {std::to_string(pid)}) == "t");
  auto e = thrown_by([&] { c.exec("select 1"); });
  CHECK(e.code() == errc::connection_lost);
  CHECK_FALSE(c.connected());
  CHECK(scalar(c, "select 1") == "1");
  CHECK(c.reconnects() == 1);
  CHECK(c.backend_pid() != pid);
  CHECK(scalar(c, "show statement_timeout") == "4321ms");
  CHECK(scalar(c, "select current_schema()") == s.name);
}

TEST_CASE("a read-only server (25006: a standby after a failover) drops the connection, so the "
          "next call connects again",
          "[postgres]") {
  scratch_schema s;
  client c = s.connect();
  int pid = c.backend_pid();
  // What a standby answers every write with; here the session is made read-only instead.
  c.exec("set default_transaction_read_only = on");
  auto e = thrown_by([&] { c.exec("create table read_only_probe (x int)"); });
  CHECK(e.code() == errc::server_error);
  CHECK(e.sqlstate() == "25006");
  CHECK_FALSE(c.connected());
  c.exec("create table read_only_probe (x int)"); // a new session: read-write again
  CHECK(c.reconnects() == 1);
  CHECK(c.backend_pid() != pid);
}

// --- migrations ---------------------------------------------------------------------------

TEST_CASE("migrations apply once and a second run applies nothing", "[postgres]") {
  scratch_schema s;
  client c = s.connect();
  CHECK(apply_migrations(c, migrations_dir) ==
        std::vector<std::string>{"0001_user_session.sql", "0002_session_retention_audit.sql",
                                 "0003_session_redis_repair.sql"});
  CHECK(apply_migrations(c, migrations_dir).empty());
  CHECK(count(c, "select count(*) from schema_migrations where checksum ~ '^[0-9a-f]{64}$'") == 3);
  CHECK(scalar(c, "select string_agg(version, ',' order by version) from schema_migrations") ==
        "0001,0002,0003");
  CHECK(count(c, "select count(*) from user_session") == 0);
  CHECK(count(c, "select count(*) from session_retention_audit") == 0);
  CHECK(count(c, "select count(*) from session_redis_repair") == 0);
}

TEST_CASE("a migration file changed after it was applied is an error naming the file",
          "[postgres]") {
  scratch_schema s;
  scratch_dir dir;
  client c = s.connect();
  apply_migrations(c, dir.path);
  dir.write("0001_user_session.sql", "\n-- edited\n");
  dir.write("0004_more.sql", "create table more (i int);\n");
  auto e = thrown_by([&] { apply_migrations(c, dir.path); });
  CHECK(e.code() == errc::migration_checksum);
  CHECK_THAT(e.what(), Catch::Contains("0001_user_session.sql"));
  CHECK(count(c, "select count(*) from schema_migrations") == 3); // 0004 was not applied
}

TEST_CASE("a file not named NNNN_name.sql is an error and nothing is applied", "[postgres]") {
  scratch_schema s;
  client c = s.connect();
  for (std::string bad : {"3_short.sql", "0003-dash.sql", "0003_x.txt", "README.md"}) {
    scratch_dir dir;
    dir.write(bad, "create table should_not_exist (i int);\n");
    auto e = thrown_by([&] { apply_migrations(c, dir.path); });
    CHECK(e.code() == errc::migration_name);
    CHECK_THAT(e.what(), Catch::Contains(bad));
  }
  scratch_dir dup;
  dup.write("0002_again.sql", "select 1;\n");
  CHECK(thrown_by([&] { apply_migrations(c, dup.path); }).code() == errc::migration_name);
  CHECK(count(c, "select count(*) from pg_tables where schemaname = current_schema()") == 0);
}

TEST_CASE("a failing migration names the file, rolls back and stays pending", "[postgres]") {
  scratch_schema s;
  scratch_dir dir;
  client c = s.connect();
  dir.write("0004_broken.sql", "create table half_done (i int);\nselect * from no_such_table;\n");
  auto e = thrown_by([&] { apply_migrations(c, dir.path); });
  CHECK(e.code() == errc::server_error);
  CHECK(e.sqlstate() == "42P01");
  CHECK_THAT(e.what(), Catch::Contains("0004_broken.sql"));
  CHECK(scalar(c, "select string_agg(version, ',' order by version) from schema_migrations") ==
        "0001,0002,0003");
  CHECK(count(c, "select count(*) from pg_tables where tablename = 'half_done'") == 0);
}

TEST_CASE("two nodes applying at once apply each migration exactly once", "[postgres]") {
  for (int round = 0; round < 3; ++round) {
    scratch_schema s;
    client a = s.connect();
    client b = s.connect();
    std::atomic<int> ready{0};
    std::vector<std::string> applied[2];
    std::string failure[2];
    auto run = [&](client& c, int i) {
      ++ready;
      while (ready < 2) {
      }
      try {
        applied[i] = apply_migrations(c, migrations_dir);
      } catch (const std::exception& e) {
        failure[i] = e.what();
      }
    };
    std::thread ta(run, std::ref(a), 0);
    std::thread tb(run, std::ref(b), 1);
    ta.join();
    tb.join();
    CHECK(failure[0].empty());
    CHECK(failure[1].empty());
    CHECK(applied[0].size() + applied[1].size() == 3);
    CHECK(count(a, "select count(*) from schema_migrations") == 3);
  }
}

// --- user_session --------------------------------------------------------------------------

TEST_CASE("upsert_sessions lands every field of 1000 rows in one statement", "[postgres]") {
  scratch_schema s;
  client c = s.migrated();
  std::vector<session_row> rows;
  for (std::int64_t i = 0; i < 1000; ++i) {
    auto r = make_row("s" + std::to_string(i), 1 + i % 7,
                      R"({"i": )" + std::to_string(i) + R"(, "tag": "row-)" + std::to_string(i) +
                          R"("})");
    r.user_id = "u" + std::to_string(i % 10);
    r.is_active = i % 3 != 0;
    r.status = r.is_active ? "ACTIVE" : (i % 2 == 0 ? "REVOKED" : "EXPIRED");
    r.created_at_ms = t0_ms + i;
    r.last_activity_at_ms = t0_ms + 2 * i + 1;
    r.expires_at_ms = t0_ms + 3 * i + 2;
    r.revoked_at_ms = r.status == "REVOKED" ? t0_ms + 4 * i + 3 : 0;
    rows.push_back(r);
  }
  CHECK(upsert_sessions(c, rows) == 1000);
  CHECK(count(c, "select count(*) from user_session where updated_at > now() - interval '1 min'") ==
        1000);
  for (const auto& want : rows) {
    auto got = load_session(c, want.session_id);
    REQUIRE(got);
    CHECK(got->user_id == want.user_id);
    CHECK(got->data == want.data);
    CHECK(got->version == want.version);
    CHECK(got->status == want.status);
    CHECK(got->is_active == want.is_active);
    CHECK(got->created_at_ms == want.created_at_ms);
    CHECK(got->last_activity_at_ms == want.last_activity_at_ms);
    CHECK(got->expires_at_ms == want.expires_at_ms);
    CHECK(got->revoked_at_ms == want.revoked_at_ms);
  }
  CHECK_FALSE(load_session(c, "missing"));
}

TEST_CASE("an older version never overwrites a newer one, and a retried batch writes nothing",
          "[postgres]") {
  scratch_schema s;
  client c = s.migrated();
  CHECK(upsert_sessions(c, {make_row("a", 5, R"({"v": 5})")}) == 1);
  CHECK(upsert_sessions(c, {make_row("a", 3, R"({"v": 3})")}) == 0);
  CHECK(upsert_sessions(c, {make_row("a", 5, R"({"v": 55})")}) == 0);
  CHECK(load_session(c, "a")->data == R"({"v": 5})");
  CHECK(upsert_sessions(c, {make_row("a", 6, R"({"v": 6})"), make_row("b", 1, "{}")}) == 2);
  CHECK(load_session(c, "a")->version == 6);
  CHECK(load_session(c, "a")->data == R"({"v": 6})");
}

TEST_CASE("a batch holding one session_id twice sends only its highest version", "[postgres]") {
  scratch_schema s;
  client c = s.migrated();
  std::vector<session_row> batch{make_row("a", 2, R"({"v": 2})"), make_row("a", 7, R"({"v": 7})"),
                                 make_row("b", 1, R"({"v": "b1"})"), make_row("a", 4, "{}"),
                                 make_row("b", 1, R"({"v": "b1-later"})")};
  auto sent = dedupe_batch(batch);
  REQUIRE(sent.size() == 2);
  CHECK(sent[0] == &batch[1]); // highest version of "a"
  CHECK(sent[1] == &batch[4]); // equal versions of "b": the later one
  CHECK(upsert_sessions(c, batch) == 2);
  CHECK(load_session(c, "a")->version == 7);
  CHECK(load_session(c, "a")->data == R"({"v": 7})");
  CHECK(load_session(c, "b")->data == R"({"v": "b1-later"})");
}

TEST_CASE("a revoked row lands inactive with status REVOKED and revoked_at", "[postgres]") {
  scratch_schema s;
  client c = s.migrated();
  REQUIRE(upsert_sessions(c, {make_row("r", 1, R"({"k": 1})")}) == 1);
  CHECK(scalar(c, "select revoked_at is null and is_active from user_session") == "t");
  auto revoked = make_row("r", 2, R"({"k": 1})");
  revoked.status = "REVOKED";
  revoked.is_active = false;
  revoked.revoked_at_ms = t0_ms + 99;
  REQUIRE(upsert_sessions(c, {revoked}) == 1);
  auto got = load_session(c, "r");
  REQUIRE(got);
  CHECK(got->status == "REVOKED");
  CHECK_FALSE(got->is_active);
  CHECK(got->revoked_at_ms == t0_ms + 99);
  CHECK(upsert_sessions(c, {make_row("r", 1, R"({"k": "late save"})")}) == 0);
  CHECK(load_session(c, "r")->status == "REVOKED"); // a late save cannot revive it
}

TEST_CASE("nasty strings round-trip through upsert_sessions and load_session", "[postgres]") {
  scratch_schema s;
  client c = s.migrated();
  const std::vector<std::string> nasty{"NULL",
                                       "null",
                                       R"(a"b)",
                                       R"(back\slash)",
                                       R"(\")",
                                       R"(\\"")",
                                       "{brace}",
                                       "}{",
                                       "com,ma",
                                       " lead and trail ",
                                       "tab\tnew\nline",
                                       "ünïcødé 😀 日本語",
                                       "'single'",
                                       "(paren)",
                                       "\x7f",
                                       "{\"a\":[1,2]}",
                                       "",
                                       "x"};
  std::vector<session_row> rows;
  for (std::size_t i = 0; i < nasty.size(); ++i) {
    std::string id = nasty[i].empty() ? "empty-id-not-allowed" : nasty[i];
    auto r = make_row(id, 1, "{" + json_quote("k" + nasty[i]) + ": " + json_quote(nasty[i]) + "}");
    r.user_id = nasty[nasty.size() - 1 - i];
    rows.push_back(r);
  }
  CHECK(upsert_sessions(c, rows) == rows.size());
  for (const auto& want : rows) {
    INFO("session_id " << want.session_id);
    auto got = load_session(c, want.session_id);
    REQUIRE(got);
    CHECK(got->session_id == want.session_id);
    CHECK(got->user_id == want.user_id);
    CHECK(scalar(c, "select data = $2::jsonb from user_session where session_id = $1",
                 {want.session_id, want.data}) == "t");
  }
}

TEST_CASE("invalid rows are refused before anything is sent", "[postgres]") {
  scratch_schema s;
  client c = s.migrated();
  auto good = make_row("good", 1, "{}");
  auto bad_status = make_row("bad", 1, "{}");
  bad_status.status = "active";
  auto nul = make_row(std::string("n\0ul", 4), 1, "{}");
  for (const auto& bad : {bad_status, nul, make_row("", 1, "{}")}) {
    auto e = thrown_by([&] { upsert_sessions(c, {good, bad}); });
    CHECK(e.code() == errc::invalid_argument);
  }
  CHECK(count(c, "select count(*) from user_session") == 0);
}

TEST_CASE("a row PostgreSQL cannot store fails its whole batch with the server's SQLSTATE",
          "[postgres]") {
  // Pinned because the sync actor must handle it: one bad row fails every row of its batch.
  scratch_schema s;
  client c = s.migrated();
  auto e = thrown_by([&] {
    upsert_sessions(c, {make_row("ok", 1, "{}"), make_row("nul", 1, R"({"k": "a\u0000b"})")});
  });
  CHECK(e.code() == errc::server_error);
  CHECK(e.sqlstate() == "22P05");
  e = thrown_by([&] { upsert_sessions(c, {make_row("ok", 1, "{}"), make_row("x", 1, "{")}); });
  CHECK(e.sqlstate() == "22P02");
  CHECK(count(c, "select count(*) from user_session") == 0);
}

// --- measurement (hidden: run with `test_postgres "[bench]"`) --------------------------------

namespace {

using bench_clock = std::chrono::steady_clock;

std::vector<session_row> bench_rows(int n, int version) {
  std::mt19937 rng(42);
  const std::string alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  std::vector<session_row> rows;
  rows.reserve(n);
  for (int i = 0; i < n; ++i) {
    std::string pad(503, 'x'); // {"p": "<503>"} is 512 bytes
    for (auto& ch : pad)
      ch = alphabet[rng() % alphabet.size()];
    auto r = make_row("bench-" + std::to_string(i), version, R"({"p": ")" + pad + R"("})");
    r.last_activity_at_ms += version * std::int64_t{1000};
    r.expires_at_ms += version * std::int64_t{1000};
    rows.push_back(std::move(r));
  }
  return rows;
}

struct hot_counts {
  long updated = 0;
  long hot = 0;
};

hot_counts read_hot(client& c) {
  c.exec("select pg_stat_force_next_flush()");
  std::this_thread::sleep_for(200ms);
  result r = c.exec("select n_tup_upd, n_tup_hot_upd from pg_stat_user_tables "
                    "where relid = 'user_session'::regclass");
  return {std::stol(r.rows.at(0).at(0).value()), std::stol(r.rows.at(0).at(1).value())};
}

/// Runs `pass` and prints rows/s, and for an update pass the share of HOT updates.
template <class F>
void measure(client& c, const std::string& label, int n, bool update, F&& pass) {
  auto before = read_hot(c);
  auto start = bench_clock::now();
  pass();
  double s = std::chrono::duration<double>(bench_clock::now() - start).count();
  auto after = read_hot(c);
  std::printf("%-40s %8d rows %7.2f s %9.0f rows/s", label.c_str(), n, s, n / s);
  if (update) {
    long upd = after.updated - before.updated;
    std::printf("  HOT %ld/%ld", after.hot - before.hot, upd);
  }
  std::printf("\n");
}

void bench_batches(client& c, int n, std::size_t batch) {
  for (int version : {1, 2}) {
    auto rows = bench_rows(n, version);
    std::string label =
        "upsert_sessions batch " + std::to_string(batch) + (version == 1 ? " insert" : " update");
    measure(c, label, n, version == 2, [&] {
      for (std::size_t i = 0; i < rows.size(); i += batch) {
        std::vector<session_row> chunk(rows.begin() + i,
                                       rows.begin() + std::min(rows.size(), i + batch));
        upsert_sessions(c, chunk);
      }
    });
  }
}

void bench_generate_series(client& c, int n) {
  const std::string sql = R"(
insert into user_session select 'bench-' || i, 'user-bench-' || i,
  ('{"p": "' || left(repeat(md5(i::text), 16), 503) || '"}')::jsonb, $2::bigint, 'ACTIVE', true,
  to_timestamp(1700000000), now() + $2::bigint * interval '1 s', now() + interval '1 h', now(),
  null
from generate_series(1, $1::int) i
on conflict (session_id) do update set user_id = excluded.user_id, data = excluded.data,
  version = excluded.version, status = excluded.status, is_active = excluded.is_active,
  created_at = excluded.created_at, last_activity_at = excluded.last_activity_at,
  expires_at = excluded.expires_at, updated_at = excluded.updated_at,
  revoked_at = excluded.revoked_at
where user_session.version < excluded.version)";
  for (int version : {1, 2})
    measure(c,
            std::string("generate_series one statement") + (version == 1 ? " insert" : " update"),
            n, version == 2, [&] {
              c.exec_params(sql, {std::to_string(n), std::to_string(version)});
            });
}

void bench_all(client& c, int n) {
  for (std::size_t batch : {std::size_t{500}, std::size_t{5000}}) {
    c.exec("truncate user_session");
    c.exec("vacuum analyze user_session");
    bench_batches(c, n, batch);
  }
  c.exec("truncate user_session");
  c.exec("vacuum analyze user_session");
  bench_generate_series(c, n);
}

/// Saves of stored sessions as the sync actor will send them: `rounds` rounds of `per_round`
/// random sessions (new version, activity and data), in batches of 500, on `n` stored rows.
void bench_saves(client& c, const std::string& label, int n, int rounds, int per_round) {
  c.exec("truncate user_session");
  auto rows = bench_rows(n, 1);
  for (std::size_t i = 0; i < rows.size(); i += 5000)
    upsert_sessions(c, {rows.begin() + i, rows.begin() + std::min(rows.size(), i + 5000)});
  c.exec("vacuum analyze user_session");
  std::mt19937 rng(7);
  measure(c, label, rounds * per_round, true, [&] {
    std::vector<session_row> batch;
    for (int k = 0; k < rounds * per_round; ++k) {
      auto& row = rows[rng() % rows.size()];
      row.version += 1;
      row.last_activity_at_ms += 1000;
      row.expires_at_ms += 1000;
      row.data[10] = static_cast<char>('a' + rng() % 26);
      batch.push_back(row);
      if (batch.size() == 500 || k + 1 == rounds * per_round) {
        upsert_sessions(c, batch);
        batch.clear();
      }
    }
  });
}

/// The retention index of the migration against one keyed on the columns a save changes.
void bench_hot(client& c, int n) {
  struct variant {
    const char* label;
    const char* key;
    int fillfactor;
  };
  const char* changing = "expires_at, coalesce(last_activity_at, created_at)";
  for (auto v : {variant{"(created_at), fillfactor 90 (migrated)", "created_at", 90},
                 variant{"(created_at), fillfactor 100", "created_at", 100},
                 variant{"(expires_at, coalesce(..)), ff 90", changing, 90},
                 variant{"(expires_at, coalesce(..)), ff 100", changing, 100}}) {
    c.exec(std::string("drop index user_session_retention_idx; create index "
                       "user_session_retention_idx on user_session (") +
           v.key + ") where is_active = false and status <> 'ACTIVE'");
    c.exec("alter table user_session set (fillfactor = " + std::to_string(v.fillfactor) + ")");
    bench_saves(c, v.label, n / 2, 20, n / 40);
  }
}

} // namespace

TEST_CASE("bench: upsert_sessions in batches of 500 and 5000 vs one INSERT from generate_series, "
          "and HOT updates by retention index",
          "[.][bench]") {
  const char* rows_env = std::getenv("SESSIOND_BENCH_ROWS");
  int n = rows_env != nullptr ? std::atoi(rows_env) : 200000;
  auto rows = bench_rows(n, 1);
  std::vector<field> data;
  for (const auto& r : rows)
    data.emplace_back(r.data);
  auto start = bench_clock::now();
  auto literal = array_literal(data);
  std::printf("array_literal of %d 512-byte strings: %.1f ms, %zu bytes\n", n,
              std::chrono::duration<double, std::milli>(bench_clock::now() - start).count(),
              literal.size());
  scratch_schema s;
  client c = s.migrated();
  std::printf("-- %d rows as migrated, inserted then all updated once\n", n);
  bench_all(c, n);
  std::printf("-- saves: %d stored rows, 20 rounds of %d random saves, by retention index\n", n / 2,
              n / 40);
  bench_hot(c, n);
}
