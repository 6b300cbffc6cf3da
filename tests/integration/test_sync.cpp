// Write-behind to PostgreSQL against the real Redis and PostgreSQL: what a sync writes, version
// fencing, coalescing, touches, a PostgreSQL outage under load, two nodes, a node killed with
// SIGKILL, the repair after Redis lost a session, and dirty sets a larger sessions.shards left.
#include "actors/sync_engine.hpp"
#include "adapters/postgres/client.hpp"
#ifdef SESSIOND_BIN
#include "binary_support.hpp"
#endif
#include "model/key_layout.hpp"
#include "model/shard_for.hpp"
#include "pg_support.hpp"
#include "support.hpp"
#include "tcp_proxy.hpp"

#include <caf/exit_reason.hpp>
#include <caf/send.hpp>
#include <nlohmann/json.hpp>
#include <sys/wait.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

using namespace sessiond;
using json = nlohmann::json;
using test::client;

namespace {

using test::admin_sync;
using test::body;
using test::one;
using test::pg_config;
using test::running_node;
using test::sql;
using test::unique_schema;

} // namespace

TEST_CASE("a sync writes every field and version; a revoked session becomes REVOKED") {
  auto cfg = pg_config();
  running_node n(cfg);
  client c(n.port);
  auto created = json::parse(c.put("/v1/sessions/w1", body("u1", R"({"a":1,"s":"x"})")).body);
  REQUIRE(c.patch("/v1/sessions/w1", R"({"b":[1,2]})").status == 200);
  REQUIRE(c.put("/v1/sessions/w2", body("u2", "{}")).status == 201);
  REQUIRE(c.put("/v1/sessions/w3", body("u3", R"({"z":null})")).status == 201);
  REQUIRE(c.del("/v1/sessions/w3").status == 204);
  auto report = admin_sync(c);
  CHECK(report["synced"] == 3);
  CHECK(one(cfg, "select count(*) from user_session") == "3");
  auto w1 = sql(cfg, "select user_id, data::text, version, status, is_active, "
                     "(extract(epoch from created_at)*1000)::bigint, revoked_at is null "
                     "from user_session where session_id = 'w1'");
  REQUIRE(w1.rows.size() == 1);
  CHECK(w1.rows[0][0] == "u1");
  CHECK(json::parse(*w1.rows[0][1]) == json::parse(R"({"a":1,"s":"x","b":[1,2]})"));
  CHECK(w1.rows[0][2] == "2");
  CHECK(w1.rows[0][3] == "ACTIVE");
  CHECK(w1.rows[0][4] == "t");
  CHECK(w1.rows[0][6] == "t");
  auto got = json::parse(c.get("/v1/sessions/w1").body);
  CHECK(got["created_at"] == created["created_at"]);
  auto w3 = sql(cfg, "select version, status, is_active, revoked_at is not null from user_session "
                     "where session_id = 'w3'");
  CHECK(w3.rows[0][0] == "2");
  CHECK(w3.rows[0][1] == "REVOKED");
  CHECK(w3.rows[0][2] == "f");
  CHECK(w3.rows[0][3] == "t");
  CHECK(admin_sync(c)["synced"] == 0); // nothing dirty any more
  auto status = json::parse(c.get("/v1/status").body);
  CHECK(status["sync"]["backlog"] == 0);
  CHECK(status["sync"]["rows_written"] == 3);
  CHECK(status["postgres"]["up"] == true);
}

/// Writes session `id` the way layout 1 (before 0.9) left it: hash at P s:<id>, the user's
/// index at P u:<uid>, and a dirty mark in P dirty:<n> when `dirty`.
void write_layout1(test::redis_probe& r, const config::config& cfg, const std::string& id,
                   const std::string& uid, int version, const std::string& data, bool dirty,
                   std::size_t set) {
  auto now = model::system_clock().now_ms();
  auto ex = std::to_string(now + 3600000);
  const auto& p = cfg.redis.key_prefix;
  r.command({"HSET", p + "s:" + id,
             "v",    std::to_string(version),
             "u",    uid,
             "st",   "A",
             "ca",   std::to_string(now - 1000),
             "la",   std::to_string(now),
             "ex",   ex,
             "ttl",  "3600",
             "d",    data,
             "t",    std::to_string(now)});
  r.command({"PEXPIREAT", p + "s:" + id, ex});
  r.command({"ZADD", p + "u:" + uid, ex, id});
  if (dirty)
    r.command({"ZADD", p + "dirty:" + std::to_string(set), std::to_string(now), id});
}

TEST_CASE("sessions of key layout 1 are served, synced, listed and moved to layout 2 with "
          "nothing lost") {
  auto cfg = pg_config();
  test::redis_probe redis(cfg.redis.url);
  // 30 sessions of an older node: 20 synced already (in PostgreSQL at their version), 10 dirty
  // in its dirty sets 0 … 4, one of them revoked-to-be.
  {
    running_node a(cfg); // creates the schema; its layout mark is dropped below
    client c(a.port);
    for (int i = 0; i < 20; ++i)
      REQUIRE(c.put("/v1/sessions/old" + std::to_string(i), body("legacy", "{}")).status == 201);
    admin_sync(c);
  }
  for (const auto& k : redis.keys(cfg.redis.key_prefix + "*")) // as a Redis of layout 1 had it
    redis.command({"DEL", k});
  for (int i = 0; i < 30; ++i)
    write_layout1(redis, cfg, "old" + std::to_string(i), "legacy", i < 20 ? 1 : 3,
                  "{\"i\":" + std::to_string(i) + "}", i >= 20, static_cast<std::size_t>(i % 5));
  REQUIRE(redis.command({"ZCARD", cfg.redis.key_prefix + "dirty:0"}).integer == 2);

  running_node b(cfg); // pg_config: the test runs the syncs
  client c(b.port);
  // Read on access, before any upgrade pass: served at its version, moved to its new key.
  auto got = c.get("/v1/sessions/old25");
  REQUIRE(got.status == 200);
  CHECK(json::parse(got.body)["data"]["i"] == 25);
  CHECK(got.header("ETag") == "\"3\"");
  CHECK(redis.command({"EXISTS", cfg.redis.key_prefix + "s:old25"}).integer == 0);
  CHECK(
      redis.command({"EXISTS", model::key_layout{cfg.redis.key_prefix}.session("old25")}).integer ==
      1);
  // A write to a session layout 1 holds continues its versions (no new session at version 1).
  auto put = c.put("/v1/sessions/old26", body("legacy", R"({"i":"new"})"));
  REQUIRE(put.status == 200);
  CHECK(put.header("ETag") == "\"4\"");
  // If-None-Match: * sees the session layout 1 holds.
  CHECK(c.put("/v1/sessions/old27", body("legacy", "{}"), {{"If-None-Match", "*"}}).status == 412);
  // The listing finds all 30, in whichever layout each is.
  auto listed = json::parse(c.get("/v1/users/legacy/sessions").body);
  CHECK(listed["sessions"].size() == 30);
  CHECK(c.del("/v1/sessions/old28").status == 204);

  // The syncs drain layout 1's dirty sets, move every key, and mark Redis upgraded: a few runs,
  // more when other tests' keys make each master's SCAN longer than one batch.
  int runs = 0;
  while (runs < 200 && redis.command({"GET", cfg.redis.key_prefix + "layout"}).str != "2") {
    admin_sync(c);
    ++runs;
  }
  CHECK(redis.command({"GET", cfg.redis.key_prefix + "layout"}).str == "2");
  CHECK(redis.keys(cfg.redis.key_prefix + "s:*").empty());
  CHECK(redis.keys(cfg.redis.key_prefix + "u:*").empty());
  CHECK(redis.keys(cfg.redis.key_prefix + "dirty:*").empty());
  CHECK(one(cfg, "select count(*) from user_session") == "30");
  CHECK(one(cfg, "select count(*) from user_session where version = 3 and status = 'ACTIVE'") ==
        "8"); // old20 … old29 but old26 (version 4) and old28 (revoked)
  CHECK(one(cfg, "select version from user_session where session_id = 'old26'") == "4");
  CHECK(one(cfg, "select status from user_session where session_id = 'old28'") == "REVOKED");
  CHECK(json::parse(c.get("/v1/users/legacy/sessions").body)["sessions"].size() == 29);
  CHECK(admin_sync(c)["synced"] == 0);
}

TEST_CASE("1,000 saves of one session between two syncs produce one row write") {
  auto cfg = pg_config();
  running_node n(cfg);
  client c(n.port);
  for (int i = 0; i < 1000; ++i)
    REQUIRE(c.put("/v1/sessions/hot", body("u", "{\"i\":" + std::to_string(i) + "}")).status < 300);
  CHECK(admin_sync(c)["synced"] == 1);
  CHECK(one(cfg, "select version from user_session where session_id = 'hot'") == "1000");
  CHECK(one(cfg, "select data->>'i' from user_session where session_id = 'hot'") == "999");
  // The server's own count of row writes on the table agrees.
  CHECK(test::eventually([&] {
    return one(cfg, "select n_tup_ins + n_tup_upd from pg_stat_user_tables where relname = "
                    "'user_session' and schemaname = '" +
                        cfg.postgres.schema + "'") == "1";
  }));
}

TEST_CASE("pure touches do not write PostgreSQL; activity reaches it once per interval") {
  auto start =
      (model::system_clock().now_ms() / 300000 + 1) * 300000 + 1000; // just past a boundary
  model::manual_clock clk(start);
  auto cfg = pg_config();
  cfg.sessions.touch_interval_s = 0;
  cfg.sync.activity_interval_s = 300;
  running_node n(cfg, clk);
  client c(n.port);
  REQUIRE(c.put("/v1/sessions/t1", body("u", "{}")).status == 201);
  CHECK(admin_sync(c)["synced"] == 1);
  clk.advance_ms(10000);
  REQUIRE(c.get("/v1/sessions/t1").status == 200); // slides the TTL within the same interval
  CHECK(admin_sync(c)["synced"] == 0);
  clk.advance_ms(300000); // the next read crosses an activity interval boundary
  REQUIRE(c.get("/v1/sessions/t1").status == 200);
  CHECK(admin_sync(c)["synced"] == 1);
  CHECK(one(cfg, "select version from user_session where session_id = 't1'") == "1");
  CHECK(one(cfg, "select (extract(epoch from last_activity_at)*1000)::bigint from user_session "
                 "where session_id = 't1'") == std::to_string(start + 310000));
}

namespace {

/// pg_config() reaching PostgreSQL through `proxy`.
config::config via_proxy(const test::tcp_proxy& proxy) {
  auto cfg = pg_config();
  auto url = cfg.postgres.url;
  auto host_port = url.find("127.0.0.1:");
  REQUIRE(host_port != std::string::npos);
  cfg.postgres.url = url.substr(0, host_port) + "127.0.0.1:" + std::to_string(proxy.port()) +
                     url.substr(url.find('/', host_port));
  cfg.postgres.connect_timeout_ms = 500;
  return cfg;
}

std::uint16_t postgres_port() {
  auto url = test::env_or_fail("POSTGRES_URL");
  return static_cast<std::uint16_t>(std::stoi(url.substr(url.rfind(':') + 1)));
}

} // namespace

TEST_CASE("an idle node shows PostgreSQL down when it goes away, and up when it is back") {
  test::tcp_proxy proxy(postgres_port());
  auto cfg = via_proxy(proxy);
  cfg.sync.interval_ms = 200;
  cfg.sync.max_backoff_ms = 1000;
  running_node n(cfg);
  client c(n.port);
  auto up = [&] { return json::parse(c.get("/v1/status").body)["postgres"]["up"] == true; };
  REQUIRE(test::eventually(up));
  proxy.set_down(true); // nothing is dirty: no sync has a row to write
  CHECK(test::eventually([&] { return !up(); }, std::chrono::seconds(10)));
  CHECK(json::parse(c.get("/readyz").body)["checks"]["postgres"] == "down");
  proxy.set_down(false);
  CHECK(test::eventually(up, std::chrono::seconds(10)));
}

TEST_CASE("PostgreSQL down under load: writes keep landing, the backlog shows, then drains") {
  test::tcp_proxy proxy(postgres_port());
  auto cfg = via_proxy(proxy);
  auto direct = pg_config();
  direct.postgres.schema = cfg.postgres.schema;
  cfg.sync.interval_ms = 200;
  cfg.sync.max_backoff_ms = 1000;
  running_node n(cfg);
  client c(n.port);
  REQUIRE(
      test::eventually([&] { return json::parse(c.get("/v1/status").body)["postgres"]["up"]; }));
  proxy.set_down(true);
  std::map<std::string, int> acked; // session → last acknowledged version
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  int i = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    auto id = "pgdown" + std::to_string(i % 300);
    auto r = c.put("/v1/sessions/" + id, body("u", "{\"i\":" + std::to_string(i) + "}"));
    REQUIRE(r.status < 300); // Redis takes every write while PostgreSQL is away
    acked[id] = std::stoi(r.header("ETag").substr(1));
    ++i;
    if (i % 500 == 0)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  auto status = json::parse(c.get("/v1/status").body);
  CHECK(status["postgres"]["up"] == false);
  CHECK(status["sync"]["backlog"].get<int>() > 0);
  CHECK(status["sync"]["failed"].get<int>() > 0);
  auto ready = json::parse(c.get("/readyz").body);
  CHECK(ready["checks"]["postgres"] == "down");
  CHECK(ready["status"] == "ready"); // PostgreSQL is not needed to serve sessions
  proxy.set_down(false);
  REQUIRE(test::eventually(
      [&] {
        auto s = json::parse(c.get("/v1/status").body);
        return s["sync"]["backlog"] == 0 && s["postgres"]["up"] == true;
      },
      std::chrono::seconds(30)));
  auto rows = sql(direct, "select session_id, version from user_session");
  std::map<std::string, int> stored;
  for (auto& r : rows.rows)
    stored[*r[0]] = std::stoi(*r[1]);
  CHECK(stored == acked);
}

TEST_CASE("two nodes writing the same sessions: PostgreSQL ends at Redis's versions, never "
          "going backwards") {
  auto cfg = pg_config();
  cfg.sync.interval_ms = 100;
  cfg.sync.batch_size = 7;
  running_node a(cfg);
  auto cfg_b = cfg;
  cfg_b.node.id = "test-node-b";
  running_node b(cfg_b);
  sql(cfg, "create table regressions (session_id text, old bigint, new bigint);"
           "create function no_regress() returns trigger language plpgsql as $$ begin "
           "if new.version < old.version then insert into regressions values (old.session_id, "
           "old.version, new.version); end if; return new; end $$;"
           "create trigger no_regress before update on user_session for each row execute "
           "function no_regress();");
  std::atomic<bool> failed{false};
  auto load = [&](std::uint16_t port, int seed) {
    client c(port);
    for (int i = 0; i < 1500; ++i) {
      auto id = "both" + std::to_string((i * 7 + seed) % 40);
      auto r = (i % 3 == 0)
                   ? c.patch("/v1/sessions/" + id, "{\"p\":" + std::to_string(i) + "}")
                   : c.put("/v1/sessions/" + id, body("u", "{\"i\":" + std::to_string(i) + "}"));
      if (r.status >= 500)
        failed = true;
    }
  };
  std::thread ta(load, a.port, 0), tb(load, b.port, 3);
  ta.join();
  tb.join();
  CHECK_FALSE(failed);
  client c(a.port);
  // Node b's own sync (every 100 ms) may hold a dirty set's lease right now, and a's pass then
  // skips that set. A pass that skipped no set has synced everything written before it.
  int passes = 1;
  while (admin_sync(c)["skipped_sets"] != 0 && passes < 100) {
    ++passes;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  REQUIRE(passes < 100);
  std::map<std::string, std::string> redis_versions;
  for (int k = 0; k < 40; ++k) {
    auto id = "both" + std::to_string(k);
    auto r = c.get("/v1/sessions/" + id);
    if (r.status == 200)
      redis_versions[id] = r.header("ETag").substr(1, r.header("ETag").size() - 2);
  }
  std::map<std::string, std::string> stored;
  for (auto& r : sql(cfg, "select session_id, version from user_session").rows)
    stored[*r[0]] = *r[1];
  CHECK(stored == redis_versions);
  CHECK(one(cfg, "select count(*) from regressions") == "0");
}

TEST_CASE("a session Redis lost and that was written again moves past PostgreSQL's version") {
  auto cfg = pg_config();
  running_node n(cfg);
  client c(n.port);
  for (int i = 0; i < 5; ++i)
    REQUIRE(c.put("/v1/sessions/lost", body("u", "{}")).status < 300);
  admin_sync(c);
  REQUIRE(one(cfg, "select version from user_session where session_id = 'lost'") == "5");
  // Redis loses the key (flushed, failed over without it), then the client saves again.
  test::redis_probe rc(cfg.redis.url);
  rc.command({"DEL", model::key_layout{cfg.redis.key_prefix}.session("lost")});
  auto again = c.put("/v1/sessions/lost", body("u", R"({"after":"loss"})"));
  REQUIRE(again.status == 201);
  CHECK(again.header("ETag") == "\"1\"");
  auto first = admin_sync(c); // fenced off by version 5: Redis moves to 6, still dirty
  CHECK(first["repaired"] == 1);
  admin_sync(c);
  CHECK(one(cfg, "select version from user_session where session_id = 'lost'") == "6");
  CHECK(one(cfg, "select data->>'after' from user_session where session_id = 'lost'") == "loss");
  CHECK(c.get("/v1/sessions/lost").header("ETag") == "\"6\"");
}

#ifdef SESSIOND_BIN
TEST_CASE("sessiond killed with SIGKILL mid-load loses no acknowledged write") {
  auto cfg = pg_config();
  auto port = test::free_port();
  pid_t pid = test::spawn_node(cfg, "durable", 300, port);
  std::map<std::string, int> acked;
  std::mutex mtx;
  REQUIRE(test::becomes_ready(port));
  std::atomic<bool> stop{false};
  std::vector<std::thread> writers;
  for (int w = 0; w < 4; ++w)
    writers.emplace_back([&, w] {
      try {
        client c(port, std::chrono::seconds(2));
        for (int i = 0; !stop; ++i) {
          auto id = "k" + std::to_string(w) + "-" + std::to_string(i % 200);
          auto r = c.put("/v1/sessions/" + id, body("u", "{\"i\":" + std::to_string(i) + "}"));
          if (r.status < 300) {
            std::lock_guard<std::mutex> g{mtx};
            acked[id] = std::stoi(r.header("ETag").substr(1));
          }
        }
      } catch (const std::exception&) {
        // the connection died with the node: the write in flight was never acknowledged
      }
    });
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  stop = true;
  for (auto& t : writers)
    t.join();
  REQUIRE(acked.size() > 100);
  pid = test::spawn_node(cfg, "durable", 300, port);
  REQUIRE(test::eventually([&] {
    try {
      return client(port).call(test::bhttp::verb::post, "/v1/admin/sync").status == 200;
    } catch (...) {
      return false;
    }
  }));
  client c(port);
  admin_sync(c);
  std::map<std::string, int> stored;
  for (auto& r : sql(cfg, "select session_id, version from user_session").rows)
    stored[*r[0]] = std::stoi(*r[1]);
  // A write can land in Redis and die with its answer, so PostgreSQL may be ahead of what the
  // client saw acknowledged, never behind; and it matches what Redis serves.
  int behind = 0, differs = 0;
  for (auto& [id, v] : acked) {
    if (stored[id] < v)
      ++behind;
    auto etag = c.get("/v1/sessions/" + id).header("ETag");
    if (etag != "\"" + std::to_string(stored[id]) + "\"")
      ++differs;
  }
  kill(pid, SIGTERM);
  waitpid(pid, nullptr, 0);
  CHECK(behind == 0);
  CHECK(differs == 0);
}
#endif

TEST_CASE("Redis flushed: sessions are served from PostgreSQL and cached in Redis again") {
  auto cfg = pg_config();
  running_node n(cfg);
  client c(n.port);
  REQUIRE(c.put("/v1/sessions/rt1", body("ru", R"({"cart":[1,2]})")).status == 201);
  REQUIRE(c.put("/v1/sessions/rt2", body("ru", "{}")).status == 201);
  REQUIRE(c.put("/v1/sessions/rt3", body("ru", "{}")).status == 201);
  REQUIRE(c.del("/v1/sessions/rt3").status == 204);
  admin_sync(c);
  // Redis loses everything under the prefix.
  test::redis_probe rc(cfg.redis.url);
  for (auto id : {"rt1", "rt2", "rt3"})
    rc.command({"DEL", model::key_layout{cfg.redis.key_prefix}.session(id)});
  auto got = c.get("/v1/sessions/rt1");
  REQUIRE(got.status == 200);
  CHECK(json::parse(got.body)["data"] == json::parse(R"({"cart":[1,2]})"));
  CHECK(got.header("ETag") == "\"1\"");
  CHECK(rc.command({"EXISTS", model::key_layout{cfg.redis.key_prefix}.session("rt1")}).integer ==
        1); // cached again
  CHECK(c.patch("/v1/sessions/rt2", R"({"x":1})").status == 200);
  CHECK(c.get("/v1/sessions/rt3").status == 404); // revoked stays revoked
  CHECK(c.put("/v1/sessions/rt3", body("ru", "{}")).status == 410);
  CHECK(c.get("/v1/sessions/never-existed").status == 404);
}

TEST_CASE("log out everywhere after Redis lost the user's sessions: PostgreSQL's rows are listed "
          "and revoked, none is served afterwards") {
  auto cfg = pg_config();
  running_node n(cfg);
  client c(n.port);
  for (int i = 0; i < 10; ++i)
    REQUIRE(c.put("/v1/sessions/lo" + std::to_string(i), body("everywhere", "{}")).status == 201);
  admin_sync(c);
  // Redis loses every key under the prefix (a restart without persistence, a lagging replica
  // promoted, an eviction): the sessions, their index, all of it.
  test::redis_probe rc(cfg.redis.url);
  for (const auto& k : rc.keys(cfg.redis.key_prefix + "*"))
    rc.command({"DEL", k});
  auto listed = json::parse(c.get("/v1/users/everywhere/sessions").body);
  CHECK(listed["sessions"].size() == 10);
  auto revoked = c.del("/v1/users/everywhere/sessions");
  REQUIRE(revoked.status == 200);
  CHECK(json::parse(revoked.body)["revoked"] == 10);
  for (int i = 0; i < 10; ++i)
    CHECK(c.get("/v1/sessions/lo" + std::to_string(i)).status == 404);
  admin_sync(c);
  CHECK(one(cfg, "select count(*) from user_session where user_id = 'everywhere' and "
                 "status = 'REVOKED'") == "10");
  CHECK(json::parse(c.get("/v1/users/everywhere/sessions").body)["sessions"].empty());
}

TEST_CASE("sessiond migrate applies the schema once and reports it up to date after") {
  auto cfg = pg_config();
  std::string env = "SESSIOND_POSTGRES_URL='" + cfg.postgres.url +
                    "' SESSIOND_POSTGRES_SCHEMA=" + cfg.postgres.schema + " ";
  auto run = [&](const std::string& cmd) {
    std::string out;
    FILE* p = popen((env + cmd + " 2>&1").c_str(), "r");
    REQUIRE(p);
    char buf[4096];
    while (auto n = fread(buf, 1, sizeof buf, p))
      out.append(buf, n);
    int status = pclose(p);
    return std::make_pair(WIFEXITED(status) ? WEXITSTATUS(status) : -1, out);
  };
  auto first = run(SESSIOND_BIN " migrate");
  CHECK(first.first == 0);
  CHECK(first.second.find("applied 0001_user_session.sql") != std::string::npos);
  CHECK(one(cfg, "select count(*) from schema_migrations") != "0");
  auto second = run(SESSIOND_BIN " migrate");
  CHECK(second.first == 0);
  CHECK(second.second.find("schema up to date") != std::string::npos);
  auto unreachable = run("SESSIOND_POSTGRES_URL=postgresql://postgres@127.0.0.1:1/x "
                         "SESSIOND_POSTGRES_CONNECT_TIMEOUT_MS=500 " SESSIOND_BIN " migrate");
  CHECK(unreachable.first == 1);
  CHECK(unreachable.second.find("sessiond migrate:") != std::string::npos);
}

TEST_CASE("a save landing between a sync's read and its ack keeps its mark and is synced next") {
  auto cfg = pg_config();
  running_node n(cfg);
  client c(n.port);
  REQUIRE(c.put("/v1/sessions/race", body("u", R"({"n":1})")).status == 201);
  test::redis_probe rc(cfg.redis.url);
  actors::redis_scripts scripts;
  model::key_layout keys{cfg.redis.key_prefix};
  auto set = model::partition_of("race");
  auto dirty = keys.dirty(set);
  auto in_set = cfg.redis.key_prefix + "s" + model::key_layout::tag(set) + ":";
  auto read = actors::parse_dirty(rc.eval(scripts.sync_read, {dirty}, {in_set, "10"}),
                                  model::system_clock().now_ms());
  REQUIRE(read.size() == 1);
  CHECK(read[0].version == "1");
  REQUIRE(c.put("/v1/sessions/race", body("u", R"({"n":2})")).status == 200); // lands meanwhile
  auto cleared = rc.eval(scripts.sync_ack, {dirty},
                         {in_set, read[0].id, read[0].version, read[0].last_activity});
  CHECK(cleared.integer == 0); // version 2 is not what was read: the mark stays
  auto report = admin_sync(c);
  CHECK(report["synced"] == 1);
  CHECK(one(cfg, "select version from user_session where session_id = 'race'") == "2");
  CHECK(one(cfg, "select data->>'n' from user_session where session_id = 'race'") == "2");
  CHECK(admin_sync(c)["synced"] == 0);
}

TEST_CASE("a sync actor that is killed is restarted by the supervisor and syncs again") {
  auto cfg = pg_config();
  running_node n(cfg);
  client c(n.port);
  REQUIRE(c.put("/v1/sessions/sup1", body("u", "{}")).status == 201);
  CHECK(admin_sync(c)["synced"] == 1);
  auto first = n.node.sync();
  caf::anon_send_exit(first, caf::exit_reason::kill);
  REQUIRE(test::eventually([&] { return n.node.sync() && n.node.sync() != first; }));
  REQUIRE(c.put("/v1/sessions/sup2", body("u", "{}")).status == 201);
  REQUIRE(test::eventually([&] {
    auto r = c.call(test::bhttp::verb::post, "/v1/admin/sync");
    return r.status == 200 && json::parse(r.body)["synced"] == 1;
  }));
  CHECK(one(cfg, "select count(*) from user_session") == "2");
}

TEST_CASE("rows PostgreSQL refuses are set aside, the rest of their batch is written, and the "
          "sync goes on") {
  auto cfg = pg_config();
  cfg.sync.max_rejected_per_run = 4;
  running_node n(cfg);
  client c(n.port);
  for (int i = 0; i < 20; ++i)
    REQUIRE(c.put("/v1/sessions/ok" + std::to_string(i), body("u", "{}")).status == 201);
  REQUIRE(c.put("/v1/sessions/bad1", body("blocked", R"({"n":1})")).status == 201);
  REQUIRE(c.put("/v1/sessions/bad2", body("blocked", R"({"n":2})")).status == 201);
  auto rejected = [&] {
    auto r = c.get("/v1/admin/sync/rejected");
    REQUIRE(r.status == 200);
    return json::parse(r.body);
  };
  auto status = [&] { return json::parse(c.get("/v1/status").body)["sync"]; };

  // A table that refuses every row (a new constraint) is a table problem: past
  // sync.max_rejected_per_run refusals the run fails, and the marks of the rest stay.
  sql(cfg, "alter table user_session add constraint t_no_blocked check (user_id <> 'blocked')");
  sql(cfg, "alter table user_session add constraint t_nobody check (user_id = 'nobody')");
  auto failed = c.call(test::bhttp::verb::post, "/v1/admin/sync");
  CHECK(failed.status == 503);
  CHECK(failed.body.find("refused more than 4 rows in one run") != std::string::npos);
  CHECK(one(cfg, "select count(*) from user_session") == "0");
  CHECK(rejected()["count"] <= 4);
  sql(cfg, "alter table user_session drop constraint t_nobody");
  REQUIRE(c.call(test::bhttp::verb::post, "/v1/admin/sync/rejected/requeue").status == 200);

  // Two bad rows among 22 (the failed run is retried in the background meanwhile): they are set
  // aside, the 20 others are written.
  REQUIRE(test::eventually([&] {
    admin_sync(c);
    return one(cfg, "select count(*) from user_session") == "20" && rejected()["count"] == 2;
  }));
  auto list = rejected();
  REQUIRE(list["sessions"].size() == 2);
  std::set<std::string> ids;
  for (const auto& s : list["sessions"]) {
    ids.insert(s["id"].get<std::string>());
    CHECK(s["version"] == 1);
    CHECK(s["error"].get<std::string>().find("t_no_blocked") != std::string::npos);
    CHECK(s["error"].get<std::string>().find("\"n\"") == std::string::npos); // no session data
  }
  CHECK(ids == std::set<std::string>{"bad1", "bad2"});
  auto again = admin_sync(c); // set aside: not tried again, not blocking
  CHECK(again["synced"] == 0);
  CHECK(again["rejected"] == 0);
  REQUIRE(test::eventually([&] { return status()["rejected"] == 2; }));
  CHECK(status()["backlog"] == 0);
  CHECK(status()["rejected_total"] >= 2);
  CHECK(c.get("/v1/sessions/bad1").status == 200); // still served from Redis

  // Fixed: a new save is synced and leaves the list; a requeue brings back the rest.
  sql(cfg, "alter table user_session drop constraint t_no_blocked");
  REQUIRE(c.put("/v1/sessions/bad2", body("blocked", R"({"n":3})")).status == 200);
  CHECK(admin_sync(c)["synced"] == 1);
  CHECK(one(cfg, "select data->>'n' from user_session where session_id = 'bad2'") == "3");
  list = rejected();
  CHECK(list["count"] == 1);
  CHECK(list["sessions"][0]["id"] == "bad1");
  auto requeued = c.call(test::bhttp::verb::post, "/v1/admin/sync/rejected/requeue");
  REQUIRE(requeued.status == 200);
  CHECK(json::parse(requeued.body)["requeued"] == 1);
  CHECK(admin_sync(c)["synced"] == 1);
  CHECK(one(cfg, "select version from user_session where session_id = 'bad1'") == "1");
  CHECK(rejected()["count"] == 0);
  CHECK(c.get("/v1/admin/sync/rejected/requeue").status == 405);
}
