// Blocking PostgreSQL client over one libpq connection: connect with deadlines, statement
// timeout and search_path, text-format queries, COPY FROM STDIN, transactions, and reconnect
// after a loss.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace sessiond::postgres {

/// Why an operation of this module failed. Keep `migration_io` last (the test walks the range).
enum class errc {
  ok = 0,
  invalid_argument,   ///< bad URL or option, a string with a NUL byte, an invalid row
  connect_failed,     ///< refused, unreachable, authentication or startup failed
  connect_timeout,    ///< no ready connection within connect_timeout
  connection_lost,    ///< the connection broke; the outcome of the command is unknown
  server_error,       ///< the server answered an error; sqlstate() says which
  bad_reply,          ///< a reply of an unexpected shape
  migration_name,     ///< a file in the migrations directory is not NNNN_name.sql
  migration_checksum, ///< an applied migration file changed since it was applied
  migration_io,       ///< the migrations directory or a file in it cannot be read
};
const char* to_string(errc e);

/// Every failure of this module. what() is one line: "<errc>: [SQLSTATE] message".
class pg_error : public std::runtime_error {
public:
  pg_error(errc code, const std::string& message, std::string sqlstate = {});
  errc code() const { return code_; }
  /// Five-character SQLSTATE for server errors (e.g. "57014"), else empty.
  const std::string& sqlstate() const { return sqlstate_; }

private:
  errc code_;
  std::string sqlstate_;
};

struct client_options {
  /// postgresql://[user[:password]@]host[:port]/db[?param=value…] (anything libpq accepts).
  std::string url;
  /// Bounds the whole connect (TCP, TLS negotiation, startup, auth), not each step.
  std::chrono::milliseconds connect_timeout{5000};
  /// SET for the session at connect (and after every reconnect); 0 disables it.
  std::chrono::milliseconds statement_timeout{30000};
  /// When not empty, the session's search_path (a GUC list, e.g. "t_12_34, public").
  std::string search_path;
  std::string application_name = "sessiond";
};

/// A nullable text value, as sent and received.
using field = std::optional<std::string>;

/// A result in text format: column names, rows of fields (nullopt = NULL), and the count of
/// rows a command affected (INSERT/UPDATE/DELETE; 0 otherwise).
struct result {
  std::vector<std::string> columns;
  std::vector<std::vector<field>> rows;
  std::uint64_t affected = 0;
  /// The field at `row` of the named column; throws pg_error(bad_reply) if there is none.
  const field& at(std::size_t row, std::string_view column) const;
};

/// One connection. Not thread-safe: one thread uses it at a time. Every call blocks.
///
/// A read-only answer (SQLSTATE 25006: a standby, e.g. the old primary after a failover) throws
/// server_error and drops the connection too, so the next call connects again, resolving the
/// host anew (with `target_session_attrs=read-write` in the URL libpq skips standbys).
/// Reconnects: a command that finds the connection broken throws errc::connection_lost and
/// leaves the client disconnected; the next call connects again first (with the same options
/// and session settings) and throws connect_failed/connect_timeout if that fails. The caller
/// decides whether and when to retry; nothing is retried here.
class client {
public:
  /// Connects; throws pg_error (invalid_argument, connect_failed, connect_timeout).
  explicit client(client_options opts);
  ~client();
  client(client&&) noexcept;
  client& operator=(client&&) noexcept;
  client(const client&) = delete;
  client& operator=(const client&) = delete;

  /// Runs one or more statements (simple protocol); the last statement's result.
  result exec(const std::string& sql);
  /// Runs one statement with $1… bound as text (nullopt = NULL).
  result exec_params(const std::string& sql, const std::vector<field>& params);
  /// Prepares `sql` as `name` on this connection unless it is already; runs nothing.
  void prepare(const std::string& name, const std::string& sql);
  /// Runs the statement prepared as `name` with $1… bound as text, preparing `sql` under that
  /// name first when this connection has not (once per connection: again after a reconnect).
  /// A statement that does not prepare throws server_error (its SQLSTATE, e.g. 42P01).
  result exec_prepared(const std::string& name, const std::string& sql,
                       const std::vector<field>& params);
  /// Runs `sql` (simple protocol; statements before the last run first) whose last statement
  /// is a `COPY … FROM STDIN`, sends `data` as its whole input in the COPY's format, and returns
  /// the COPY's result (`affected`: rows copied). Data the server refuses throws
  /// server_error; the connection stays usable (inside a transaction, the transaction failed).
  result copy_in(const std::string& sql, std::string_view data);

  /// Runs f() between BEGIN and COMMIT and returns what it returns; any exception from f()
  /// or COMMIT rolls back (when the connection still stands) and propagates. Not nestable.
  template <class F>
  auto transaction(F&& f) -> decltype(f());

  /// True while the connection is up as far as the client knows.
  bool connected() const;
  /// True inside BEGIN … COMMIT (also when the transaction already failed).
  bool in_transaction() const;
  /// How many times the client connected again after the first connect.
  std::uint64_t reconnects() const;
  /// The server process id of the current connection (for tests and logs); 0 when down.
  int backend_pid() const;
  const client_options& options() const;

private:
  void begin();
  void commit();
  void rollback_quietly() noexcept;

  struct impl;
  std::unique_ptr<impl> impl_;
};

/// A PostgreSQL text-format array literal of `items`, e.g. {"a","b\"c",NULL}: every element
/// quoted, `"` and `\` escaped, nullopt as NULL. Throws pg_error(invalid_argument) on a NUL
/// byte (PostgreSQL text cannot hold one).
std::string array_literal(const std::vector<field>& items);

template <class F>
auto client::transaction(F&& f) -> decltype(f()) {
  begin();
  try {
    if constexpr (std::is_void_v<decltype(f())>) {
      f();
      commit();
    } else {
      auto out = f();
      commit();
      return out;
    }
  } catch (...) {
    rollback_quietly();
    throw;
  }
}

} // namespace sessiond::postgres
