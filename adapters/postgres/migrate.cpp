// apply_migrations(): read and check the directory, verify what was applied, then apply each
// pending file in its own transaction under the advisory lock.
#include "adapters/postgres/migrate.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <iterator>
#include <map>
#include <string_view>

namespace sessiond::postgres {

namespace {

namespace fs = std::filesystem;

constexpr const char* create_table_sql =
    "create table if not exists schema_migrations (version text primary key, "
    "applied_at timestamptz not null default now(), checksum text not null)";

struct migration {
  std::string version; ///< NNNN
  std::string name;    ///< the file name, for messages and the result
  std::string sql;
  std::string checksum; ///< hex SHA-256 of the file's bytes
};

std::string lock_sql() {
  return "select pg_advisory_xact_lock(" + std::to_string(migration_lock_key) + ")";
}

std::string sha256_hex(const std::string& bytes) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(bytes.data(), bytes.size(), md, &len, EVP_sha256(), nullptr) != 1)
    throw pg_error(errc::migration_io, "SHA-256 failed");
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i)
    out.append(1, hex[md[i] >> 4]).append(1, hex[md[i] & 0xf]);
  return out;
}

/// NNNN_name.sql with name in [A-Za-z0-9_]+.
bool valid_name(std::string_view n) {
  constexpr std::size_t digits = 4;
  constexpr std::string_view ext = ".sql";
  if (n.size() < digits + 2 + ext.size() || n.substr(n.size() - ext.size()) != ext ||
      n[digits] != '_')
    return false;
  std::string_view number = n.substr(0, digits);
  std::string_view name = n.substr(digits + 1, n.size() - digits - 1 - ext.size());
  auto is_digit = [](char ch) { return std::isdigit(static_cast<unsigned char>(ch)) != 0; };
  auto is_word = [](char ch) { return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_'; };
  return std::all_of(number.begin(), number.end(), is_digit) &&
         std::all_of(name.begin(), name.end(), is_word);
}

migration read_one(const fs::directory_entry& e) {
  std::string name = e.path().filename().string();
  std::error_code ec;
  if (!valid_name(name) || !e.is_regular_file(ec))
    throw pg_error(errc::migration_name,
                   name + ": every entry of the migrations directory must be a file "
                          "named NNNN_name.sql");
  std::ifstream in(e.path(), std::ios::binary);
  if (!in)
    throw pg_error(errc::migration_io, name + ": cannot be opened");
  std::string sql((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad())
    throw pg_error(errc::migration_io, name + ": cannot be read");
  return migration{name.substr(0, 4), name, sql, sha256_hex(sql)};
}

void check_order(std::vector<migration>& out) {
  std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return a.name < b.name; });
  for (std::size_t i = 1; i < out.size(); ++i)
    if (out[i].version == out[i - 1].version)
      throw pg_error(errc::migration_name,
                     out[i - 1].name + " and " + out[i].name + " share version " + out[i].version);
}

std::vector<migration> read_dir(const fs::path& dir) {
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  if (ec)
    throw pg_error(errc::migration_io, dir.string() + ": " + ec.message());
  std::vector<migration> out;
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    if (ec)
      throw pg_error(errc::migration_io, dir.string() + ": " + ec.message());
    out.push_back(read_one(*it));
  }
  check_order(out);
  return out;
}

void verify(const migration& m, const std::string& recorded) {
  if (m.checksum != recorded)
    throw pg_error(errc::migration_checksum,
                   m.name + " changed after it was applied (recorded sha256 " + recorded +
                       ", file now " + m.checksum + "): add a new migration instead");
}

/// Creates schema_migrations when missing and reads it, under the lock (two concurrent
/// CREATE TABLE IF NOT EXISTS can both pass the check and collide).
std::map<std::string, std::string> recorded(client& c) {
  return c.transaction([&] {
    c.exec(lock_sql());
    c.exec(create_table_sql);
    std::map<std::string, std::string> out;
    for (auto& row : c.exec("select version, checksum from schema_migrations").rows)
      out[row.at(0).value_or("")] = row.at(1).value_or("");
    return out;
  });
}

void run_file(client& c, const migration& m) {
  try {
    c.exec(m.sql);
  } catch (const pg_error& e) {
    if (e.code() != errc::server_error)
      throw;
    throw pg_error(errc::server_error, m.name + ": " + e.what(), e.sqlstate());
  }
  if (!c.in_transaction())
    throw pg_error(errc::invalid_argument,
                   m.name + " ended its transaction: no BEGIN/COMMIT/ROLLBACK in migrations");
}

/// Applies `m` unless another node did since recorded() looked; true when this call did.
bool apply_one(client& c, const migration& m) {
  return c.transaction([&] {
    c.exec(lock_sql());
    auto r =
        c.exec_params("select checksum from schema_migrations where version = $1", {m.version});
    if (!r.rows.empty()) {
      verify(m, r.rows.front().at(0).value_or(""));
      return false;
    }
    run_file(c, m);
    c.exec_params("insert into schema_migrations (version, checksum) values ($1, $2)",
                  {m.version, m.checksum});
    return true;
  });
}

std::vector<std::string> apply_all(client& c, const std::vector<migration>& files) {
  std::map<std::string, std::string> done = recorded(c);
  for (const auto& m : files)
    if (auto it = done.find(m.version); it != done.end())
      verify(m, it->second);
  std::vector<std::string> applied;
  for (const auto& m : files)
    if (done.count(m.version) == 0 && apply_one(c, m))
      applied.push_back(m.name);
  return applied;
}

} // namespace

void create_schema(client& c, const std::string& name) {
  auto plain = !name.empty() && std::all_of(name.begin(), name.end(), [](char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_';
  });
  if (!plain)
    throw pg_error(errc::invalid_argument, "schema name '" + name + "' is not a plain identifier");
  c.transaction([&] {
    c.exec(lock_sql());
    c.exec("create schema if not exists \"" + name + "\"");
  });
}

std::vector<std::string> apply_migrations(client& c, const std::filesystem::path& dir) {
  return apply_all(c, read_dir(dir));
}

std::vector<std::string> apply_migrations(client& c, const std::vector<migration_source>& files) {
  std::vector<migration> list;
  for (const auto& f : files) {
    if (!valid_name(f.name))
      throw pg_error(errc::migration_name, f.name + ": a migration must be named NNNN_name.sql");
    list.push_back(migration{f.name.substr(0, 4), f.name, f.sql, sha256_hex(f.sql)});
  }
  check_order(list);
  return apply_all(c, list);
}

} // namespace sessiond::postgres
