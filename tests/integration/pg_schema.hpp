// The test PostgreSQL for the tests that use the adapter directly: its URL from POSTGRES_URL,
// names no other test run uses, and a schema of its own per test, dropped with everything in it
// at the end. Test files derive their scratch schema from pg_schema and add how they connect.
#pragma once

#include "adapters/postgres/client.hpp"

#include <catch2/catch.hpp>
#include <unistd.h>

#include <cstdlib>
#include <random>
#include <string>

namespace sessiond::test {

/// Options for the test PostgreSQL; fails the test when POSTGRES_URL is not set.
inline postgres::client_options postgres_env_options() {
  const char* url = std::getenv("POSTGRES_URL");
  if (url == nullptr || *url == '\0')
    FAIL("POSTGRES_URL is not set: run scripts/test, or `scripts/services start` and "
         "`eval \"$(scripts/services env)\"` (e.g. "
         "POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/sessiond)");
  postgres::client_options o;
  o.url = url;
  return o;
}

/// `prefix`, this process id and a random number: a name no concurrent test run picks.
inline std::string unique_name(const std::string& prefix) {
  std::random_device rd;
  return prefix + std::to_string(::getpid()) + "_" + std::to_string(rd() % 1000000000);
}

/// A schema created for one test and dropped (cascade) when it ends.
struct pg_schema {
  std::string name;
  postgres::client admin{postgres_env_options()};

  explicit pg_schema(const std::string& prefix) : name(unique_name(prefix)) {
    admin.exec("create schema " + name);
  }
  ~pg_schema() {
    try {
      admin.exec("drop schema " + name + " cascade");
    } catch (...) { // a failed drop must not mask the test's own result
    }
  }
  pg_schema(const pg_schema&) = delete;
  pg_schema& operator=(const pg_schema&) = delete;

  /// Connection options with the schema as search_path.
  postgres::client_options options() const {
    auto o = postgres_env_options();
    o.search_path = name;
    return o;
  }
};

} // namespace sessiond::test
