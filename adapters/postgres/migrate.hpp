// Versioned schema migrations: each NNNN_name.sql file of a directory is applied once, in order,
// in its own transaction, and recorded with its SHA-256 in schema_migrations.
#pragma once

#include "adapters/postgres/client.hpp"

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace sessiond::postgres {

/// The pg_advisory_xact_lock key that serializes migrations across nodes ("sessiond" in ASCII).
inline constexpr std::int64_t migration_lock_key = 0x73657373696f6e64;

/// Brings the schema up to date with the files in `dir` and returns the names of the files it
/// applied, in order (empty when nothing was pending).
///
/// Every entry of `dir` must be a regular file named NNNN_name.sql (4 digits, then [A-Za-z0-9_]);
/// the version is the NNNN, unique. Files apply in version order. Each pending file runs in its
/// own transaction together with its schema_migrations row, under pg_advisory_xact_lock, so
/// nodes starting at once apply it exactly once (the others find the row and skip it). A file
/// must therefore not contain BEGIN/COMMIT or statements that cannot run in a transaction
/// (CREATE INDEX CONCURRENTLY). Versions recorded without a file here (a newer node applied
/// them) are left alone.
///
/// Throws pg_error before applying anything when a name is bad (migration_name), a file cannot
/// be read (migration_io), or an applied file's checksum changed (migration_checksum, naming the
/// file); a failing file rolls back and throws server_error naming the file.
std::vector<std::string> apply_migrations(client& c, const std::filesystem::path& dir);

/// CREATE SCHEMA IF NOT EXISTS `name` (a plain identifier: [a-z_][a-z0-9_]*), so
/// postgres.schema may name a schema nobody created yet. Under the migration lock.
void create_schema(client& c, const std::string& name);

/// One migration as text: `name` is its file name (NNNN_name.sql), `sql` its bytes.
struct migration_source {
  std::string name;
  std::string sql;
};

/// The same with the files given as text (the node applies the migrations embedded in its
/// binary at build time, so a deployed sessiond needs no migrations directory).
std::vector<std::string> apply_migrations(client& c, const std::vector<migration_source>& files);

/// The migrations of this build's migrations/ directory, embedded in order.
const std::vector<migration_source>& embedded_migrations();

} // namespace sessiond::postgres
