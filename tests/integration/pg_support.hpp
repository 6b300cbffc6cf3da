// Helpers of the integration tests that run a node against the test PostgreSQL: a config with
// a schema of its own, SQL in that schema, a started node, the admin sync.
#pragma once

#include "adapters/postgres/client.hpp"
#include "app/node.hpp"
#include "pg_schema.hpp"
#include "support.hpp"

#include <nlohmann/json.hpp>

#include <string>

namespace sessiond::test {

inline std::string unique_schema() {
  return unique_name("t_");
}

/// test_config() with the test PostgreSQL, a schema of its own and a long sync interval (the
/// tests sync with POST /v1/admin/sync unless they say otherwise).
inline config::config pg_config() {
  auto c = test_config();
  c.postgres.url = env_or_fail("POSTGRES_URL");
  c.postgres.schema = unique_schema();
  c.sync.interval_ms = 3600000;
  c.node.id = "test-node";
  return c;
}

/// SQL in the schema of config `c`.
inline postgres::result sql(const config::config& c, const std::string& q) {
  postgres::client_options o;
  o.url = c.postgres.url;
  o.search_path = c.postgres.schema;
  postgres::client pg(o);
  return pg.exec(q);
}

inline std::string one(const config::config& c, const std::string& q) {
  auto r = sql(c, q);
  REQUIRE(r.rows.size() == 1);
  return r.rows[0][0].value_or("NULL");
}

struct running_node {
  app::node node;
  std::uint16_t port;
  explicit running_node(config::config c, const model::clock& clk = model::system_clock())
      : node(std::move(c), clk), port(node.start()) {
    REQUIRE(eventually([&] { return node.stats().redis_up; }));
  }
};

inline nlohmann::json admin_sync(client& c) {
  auto r = c.call(bhttp::verb::post, "/v1/admin/sync");
  REQUIRE(r.status == 200);
  return nlohmann::json::parse(r.body);
}

inline std::string body(const std::string& uid, const std::string& data) {
  return R"({"user_id":")" + uid + R"(","data":)" + data + "}";
}

} // namespace sessiond::test
