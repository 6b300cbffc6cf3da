// Which PostgreSQL failures the sync blames on a row (set aside after halving the batch) and
// which on PostgreSQL itself (the run fails and is retried with backoff, every mark kept).
#include "actors/sync_engine.hpp"

#include <catch2/catch.hpp>

using sessiond::actors::row_refused;
using sessiond::postgres::errc;
using sessiond::postgres::pg_error;

namespace {

bool refused(const char* sqlstate) {
  return row_refused(pg_error(errc::server_error, "x", sqlstate));
}

} // namespace

TEST_CASE("data errors, constraints, limits and trigger exceptions are a row's fault") {
  CHECK(refused("22P02")); // invalid text representation (e.g. not JSON)
  CHECK(refused("22008")); // datetime field overflow
  CHECK(refused("23514")); // check constraint
  CHECK(refused("23503")); // foreign key
  CHECK(refused("23502")); // not null
  CHECK(refused("54000")); // program limit (an index row too large)
  CHECK(refused("P0001")); // raised by a trigger
  CHECK(row_refused(pg_error(errc::invalid_argument, "a time out of range")));
}

TEST_CASE("connection, server, schema and concurrency failures are not") {
  CHECK_FALSE(refused("08006")); // connection failure
  CHECK_FALSE(refused("57P01")); // admin shutdown
  CHECK_FALSE(refused("57014")); // statement timeout
  CHECK_FALSE(refused("53100")); // disk full
  CHECK_FALSE(refused("40001")); // serialization failure
  CHECK_FALSE(refused("40P01")); // deadlock
  CHECK_FALSE(refused("42P01")); // undefined table
  CHECK_FALSE(refused("42501")); // insufficient privilege
  CHECK_FALSE(refused("25P02")); // in failed transaction
  CHECK_FALSE(refused(""));
  CHECK_FALSE(row_refused(pg_error(errc::connection_lost, "gone")));
  CHECK_FALSE(row_refused(pg_error(errc::connect_failed, "refused")));
}
