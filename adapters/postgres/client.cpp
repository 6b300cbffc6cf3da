// libpq behind sessiond::postgres::client: a connect polled against one deadline, session
// settings, text-format results, COPY FROM STDIN, server errors mapped to pg_error, and lazy
// reconnects.
#include "adapters/postgres/client.hpp"

#include <libpq-fe.h>
#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <set>
#include <string_view>
#include <utility>

namespace sessiond::postgres {

// --- errc, pg_error, array literals ------------------------------------------------------

const char* to_string(errc e) {
  switch (e) {
  case errc::ok:
    return "ok";
  case errc::invalid_argument:
    return "invalid_argument";
  case errc::connect_failed:
    return "connect_failed";
  case errc::connect_timeout:
    return "connect_timeout";
  case errc::connection_lost:
    return "connection_lost";
  case errc::server_error:
    return "server_error";
  case errc::bad_reply:
    return "bad_reply";
  case errc::migration_name:
    return "migration_name";
  case errc::migration_checksum:
    return "migration_checksum";
  case errc::migration_io:
    return "migration_io";
  }
  return "unknown";
}

namespace {

std::string describe(errc code, const std::string& message, const std::string& sqlstate) {
  std::string out = to_string(code);
  out += ": ";
  if (!sqlstate.empty())
    out += "[" + sqlstate + "] ";
  return out + message;
}

} // namespace

pg_error::pg_error(errc code, const std::string& message, std::string sqlstate)
    : std::runtime_error(describe(code, message, sqlstate)),
      code_(code),
      sqlstate_(std::move(sqlstate)) {}

namespace {

/// Appends `s` quoted, with `"` and `\` escaped (the only characters special inside quotes).
void append_quoted(std::string& out, std::string_view s) {
  out += '"';
  std::size_t from = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    char ch = s[i];
    if (ch != '"' && ch != '\\' && ch != '\0')
      continue;
    if (ch == '\0')
      throw pg_error(errc::invalid_argument, "array element with a NUL byte");
    out.append(s.data() + from, i - from).append(1, '\\');
    from = i;
  }
  out.append(s.data() + from, s.size() - from).append(1, '"');
}

} // namespace

std::string array_literal(const std::vector<field>& items) {
  std::size_t size = 2;
  for (const auto& item : items)
    size += item ? item->size() + 4 : 5; // quotes and comma, or NULL and comma; few escapes
  std::string out;
  out.reserve(size);
  out += '{';
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i > 0)
      out += ',';
    if (items[i])
      append_quoted(out, *items[i]);
    else
      out += "NULL";
  }
  out += '}';
  return out;
}

const field& result::at(std::size_t row, std::string_view column) const {
  for (std::size_t c = 0; c < columns.size(); ++c) {
    if (columns[c] == column && row < rows.size() && c < rows[row].size())
      return rows[row][c];
  }
  throw pg_error(errc::bad_reply,
                 "no field " + std::string(column) + " in row " + std::to_string(row));
}

// --- libpq helpers ------------------------------------------------------------------------

namespace {

using steady = std::chrono::steady_clock;
using ms = std::chrono::milliseconds;

struct conn_deleter {
  void operator()(PGconn* c) const { PQfinish(c); }
};
using conn_ptr = std::unique_ptr<PGconn, conn_deleter>;

struct result_deleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using result_ptr = std::unique_ptr<PGresult, result_deleter>;

/// libpq messages span lines ("…failed: Connection refused\n\tIs the server running…"):
/// make them one line.
std::string one_line(const char* s) {
  std::string out;
  for (const char* p = s != nullptr ? s : ""; *p != '\0'; ++p) {
    bool blank = *p == '\n' || *p == '\t' || *p == '\r' || *p == ' ';
    if (!blank)
      out += *p;
    else if (!out.empty() && out.back() != ' ')
      out += ' ';
  }
  while (!out.empty() && out.back() == ' ')
    out.pop_back();
  return out;
}

void check_no_nul(std::string_view s, const char* what) {
  if (s.find('\0') != s.npos)
    throw pg_error(errc::invalid_argument, std::string(what) + " with a NUL byte");
}

/// Notices ("relation … already exists, skipping") would go to stderr; a library stays quiet.
void ignore_notice(void*, const char*) {}

void check_options(const client_options& o) {
  char* err = nullptr;
  PQconninfoOption* parsed = PQconninfoParse(o.url.c_str(), &err);
  if (parsed == nullptr) {
    std::string why = err != nullptr ? one_line(err) : "out of memory";
    PQfreemem(err);
    throw pg_error(errc::invalid_argument, "bad PostgreSQL URL: " + why);
  }
  PQconninfoFree(parsed);
  if (o.connect_timeout.count() <= 0 || o.statement_timeout.count() < 0)
    throw pg_error(errc::invalid_argument, "connect_timeout must be > 0, statement_timeout >= 0");
  check_no_nul(o.url, "url");
  check_no_nul(o.search_path, "search_path");
}

/// Waits until the connection's socket is readable (or writable); false at the deadline.
/// A socket error counts as ready: PQconnectPoll then reports it.
bool wait_socket(PGconn* c, bool for_write, steady::time_point deadline) {
  pollfd p{PQsocket(c), static_cast<short>(for_write ? POLLOUT : POLLIN), 0};
  for (;;) {
    auto left = std::chrono::duration_cast<ms>(deadline - steady::now()).count();
    if (left <= 0)
      return false;
    int n = ::poll(&p, 1, static_cast<int>(left) + 1);
    if (n != 0 && !(n < 0 && errno == EINTR))
      return true;
  }
}

std::string where(PGconn* c) {
  const char* host = PQhost(c);
  const char* port = PQport(c);
  return std::string(host != nullptr ? host : "?") + ":" + (port != nullptr ? port : "?");
}

/// Keywords before "dbname" are defaults the URL may override (libpq keeps the last value).
conn_ptr connect_by(const client_options& o) {
  const char* keys[] = {
      "fallback_application_name", "client_encoding",  "keepalives", "keepalives_idle",
      "keepalives_interval",       "keepalives_count", "dbname",     nullptr};
  const char* values[] = {
      o.application_name.c_str(), "UTF8", "1", "30", "10", "3", o.url.c_str(), nullptr};
  auto deadline = steady::now() + o.connect_timeout;
  conn_ptr c(PQconnectStartParams(keys, values, 1));
  if (!c)
    throw pg_error(errc::connect_failed, "out of memory");
  auto st = PGRES_POLLING_WRITING;
  while (st != PGRES_POLLING_OK) {
    if (st == PGRES_POLLING_FAILED || PQstatus(c.get()) == CONNECTION_BAD)
      throw pg_error(errc::connect_failed, one_line(PQerrorMessage(c.get())));
    if (!wait_socket(c.get(), st == PGRES_POLLING_WRITING, deadline))
      throw pg_error(errc::connect_timeout, "no connection to " + where(c.get()) + " within " +
                                                std::to_string(o.connect_timeout.count()) +
                                                " ms (connect_timeout)");
    st = PQconnectPoll(c.get());
  }
  PQsetNoticeProcessor(c.get(), ignore_notice, nullptr);
  return c;
}

std::string error_message(const PGresult* r, PGconn* c) {
  const char* primary = r != nullptr ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : nullptr;
  if (primary == nullptr)
    return one_line(PQerrorMessage(c));
  std::string out = primary;
  // A constraint's "Failing row contains (…)" detail would copy a session's data into logs,
  // /v1/status and the sync's rejected list: left out (the primary message names the constraint).
  const char* detail = PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL);
  if (detail != nullptr && std::string_view(detail).rfind("Failing row contains", 0) != 0)
    out += " (" + one_line(detail) + ")";
  return out;
}

result to_result(const PGresult* r) {
  result out;
  int nf = PQnfields(r);
  int nt = PQntuples(r);
  out.columns.reserve(nf);
  for (int f = 0; f < nf; ++f)
    out.columns.emplace_back(PQfname(r, f));
  out.rows.resize(nt);
  for (int t = 0; t < nt; ++t) {
    auto& row = out.rows[t];
    row.reserve(nf);
    for (int f = 0; f < nf; ++f) {
      if (PQgetisnull(r, t, f))
        row.emplace_back(std::nullopt);
      else
        row.emplace_back(std::string(PQgetvalue(r, t, f), PQgetlength(r, t, f)));
    }
  }
  out.affected = std::strtoull(PQcmdTuples(const_cast<PGresult*>(r)), nullptr, 10);
  return out;
}

} // namespace

// --- client -------------------------------------------------------------------------------

struct client::impl {
  client_options opts;
  conn_ptr conn;
  bool ever_connected = false;
  std::uint64_t reconnects = 0;
  /// Statements prepared on the current connection (a new connection has none).
  std::set<std::string> prepared;

  /// Connects when there is no connection; the session settings are part of connecting.
  void ensure_connected() {
    if (conn)
      return;
    conn_ptr c = connect_by(opts);
    apply_settings(c.get());
    reconnects += ever_connected ? 1 : 0;
    ever_connected = true;
    prepared.clear();
    conn = std::move(c);
  }

  void apply_settings(PGconn* c) {
    std::string sql = "select set_config('statement_timeout', $1, false)";
    std::string timeout = std::to_string(opts.statement_timeout.count());
    std::vector<const char*> params{timeout.c_str()};
    if (!opts.search_path.empty()) {
      sql += ", set_config('search_path', $2, false)";
      params.push_back(opts.search_path.c_str());
    }
    result_ptr r(PQexecParams(c, sql.c_str(), static_cast<int>(params.size()), nullptr,
                              params.data(), nullptr, nullptr, 0));
    if (PQresultStatus(r.get()) != PGRES_TUPLES_OK) {
      const char* state = PQresultErrorField(r.get(), PG_DIAG_SQLSTATE);
      throw pg_error(errc::connect_failed, "session settings: " + error_message(r.get(), c),
                     state != nullptr ? state : "");
    }
  }

  /// Maps a finished command to its result or a pg_error; drops a connection that broke.
  result_ptr check(result_ptr r) {
    auto st = PQresultStatus(r.get());
    if (r && (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_EMPTY_QUERY))
      return r;
    const char* state = r ? PQresultErrorField(r.get(), PG_DIAG_SQLSTATE) : nullptr;
    std::string sqlstate = state != nullptr ? state : "";
    std::string message = error_message(r.get(), conn.get());
    if (PQstatus(conn.get()) == CONNECTION_BAD) {
      conn.reset();
      throw pg_error(errc::connection_lost, message, sqlstate);
    }
    if (sqlstate == "25006")
      conn.reset(); // read-only: a standby (the old primary after a failover); the next call
                    // connects again, resolving the host anew (target_session_attrs applies)
    if (r && st == PGRES_FATAL_ERROR)
      throw pg_error(errc::server_error, message, sqlstate);
    conn.reset(); // COPY or a bad response: the protocol state is unknown, start afresh
    throw pg_error(errc::bad_reply, std::string("unexpected result ") + PQresStatus(st));
  }

  result_ptr run(const std::string& sql, const std::vector<field>* params) {
    check_no_nul(sql, "SQL");
    ensure_connected();
    if (params == nullptr)
      return check(result_ptr(PQexec(conn.get(), sql.c_str())));
    std::vector<const char*> values;
    values.reserve(params->size());
    for (const auto& p : *params) {
      if (p)
        check_no_nul(*p, "parameter");
      values.push_back(p ? p->c_str() : nullptr);
    }
    return check(result_ptr(PQexecParams(conn.get(), sql.c_str(), static_cast<int>(values.size()),
                                         nullptr, values.data(), nullptr, nullptr, 0)));
  }

  void prepare(const std::string& name, const std::string& sql) {
    check_no_nul(sql, "SQL");
    ensure_connected();
    if (prepared.count(name) != 0)
      return;
    check(result_ptr(PQprepare(conn.get(), name.c_str(), sql.c_str(), 0, nullptr)));
    prepared.insert(name);
  }

  result_ptr run_prepared(const std::string& name, const std::string& sql,
                          const std::vector<field>& params) {
    prepare(name, sql);
    std::vector<const char*> values;
    values.reserve(params.size());
    for (const auto& p : params) {
      if (p)
        check_no_nul(*p, "parameter");
      values.push_back(p ? p->c_str() : nullptr);
    }
    return check(
        result_ptr(PQexecPrepared(conn.get(), name.c_str(), static_cast<int>(values.size()),
                                  values.data(), nullptr, nullptr, 0)));
  }

  /// Starts the COPY that ends `sql`, sends `data` in chunks, ends it; the COPY's result.
  result_ptr copy_in(const std::string& sql, std::string_view data) {
    check_no_nul(sql, "SQL");
    ensure_connected();
    PGconn* c = conn.get();
    result_ptr started(PQexec(c, sql.c_str()));
    if (PQresultStatus(started.get()) != PGRES_COPY_IN) {
      check(std::move(started)); // an error throws; a statement that is not a COPY does not
      throw pg_error(errc::invalid_argument, "copy_in: the last statement is not COPY FROM STDIN");
    }
    constexpr std::size_t chunk = 1 << 20; // PQputCopyData takes an int length
    for (std::size_t at = 0; at < data.size(); at += chunk) {
      auto n = static_cast<int>(std::min(chunk, data.size() - at));
      if (PQputCopyData(c, data.data() + at, n) != 1)
        return check(result_ptr()); // the connection broke: connection_lost
    }
    if (PQputCopyEnd(c, nullptr) != 1)
      return check(result_ptr());
    result_ptr done(PQgetResult(c));
    while (result_ptr(PQgetResult(c))) // nothing follows the COPY; drain to be ready again
      ;
    return check(std::move(done));
  }
};

client::client(client_options opts) : impl_(std::make_unique<impl>()) {
  check_options(opts);
  impl_->opts = std::move(opts);
  impl_->ensure_connected();
}

client::~client() = default;
client::client(client&&) noexcept = default;
client& client::operator=(client&&) noexcept = default;

result client::exec(const std::string& sql) {
  return to_result(impl_->run(sql, nullptr).get());
}

result client::exec_params(const std::string& sql, const std::vector<field>& params) {
  return to_result(impl_->run(sql, &params).get());
}

void client::prepare(const std::string& name, const std::string& sql) {
  impl_->prepare(name, sql);
}

result client::exec_prepared(const std::string& name, const std::string& sql,
                             const std::vector<field>& params) {
  return to_result(impl_->run_prepared(name, sql, params).get());
}

result client::copy_in(const std::string& sql, std::string_view data) {
  return to_result(impl_->copy_in(sql, data).get());
}

void client::begin() {
  impl_->ensure_connected();
  if (in_transaction())
    throw pg_error(errc::invalid_argument, "transaction() inside a transaction");
  impl_->run("begin", nullptr);
}

void client::commit() {
  // COMMIT of a failed transaction answers ROLLBACK, not an error: it must not pass as done.
  result_ptr r = impl_->run("commit", nullptr);
  if (std::string_view(PQcmdStatus(r.get())) == "ROLLBACK")
    throw pg_error(errc::server_error, "transaction failed earlier and was rolled back");
}

void client::rollback_quietly() noexcept {
  PGconn* c = impl_->conn.get();
  if (c == nullptr || !in_transaction())
    return;
  result_ptr r(PQexec(c, "rollback"));
  if (PQresultStatus(r.get()) != PGRES_COMMAND_OK)
    impl_->conn.reset(); // cannot tell the state: the next call starts a fresh session
}

bool client::connected() const {
  return impl_ && impl_->conn && PQstatus(impl_->conn.get()) == CONNECTION_OK;
}

bool client::in_transaction() const {
  if (!connected())
    return false;
  auto st = PQtransactionStatus(impl_->conn.get());
  return st == PQTRANS_INTRANS || st == PQTRANS_INERROR;
}

std::uint64_t client::reconnects() const {
  return impl_->reconnects;
}

int client::backend_pid() const {
  return connected() ? PQbackendPID(impl_->conn.get()) : 0;
}

const client_options& client::options() const {
  return impl_->opts;
}

} // namespace sessiond::postgres
