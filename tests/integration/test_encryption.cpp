// Encryption at rest of session data against the real Redis and PostgreSQL: what Redis holds,
// a value copied to another session, rotation end to end with /v1/status's counts, a missing
// key, plaintext sessions when encryption is turned on, the sync and the read-through.
#include "adapters/crypto/keyring.hpp"
#include "config/config.hpp"
#include "model/key_layout.hpp"
#include "pg_support.hpp"
#include "support.hpp"
#include "temp_file.hpp"

#include <nlohmann/json.hpp>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

using namespace sessiond;
using json = nlohmann::json;
namespace bhttp = boost::beast::http;
using test::admin_sync;
using test::body;
using test::client;
using test::one;
using test::pg_config;
using test::running_node;

namespace {

/// base64 of 32 bytes of `fill`.
std::string key_line(const std::string& id, char fill) {
  return id + ":" + crypto::base64_encode(std::string(crypto::key_bytes, fill)) + "\n";
}

config::config enc_config(const test::temp_file& f) {
  auto cfg = pg_config();
  cfg.encryption.keys_file = f.path;
  cfg.encryption.rotate_interval_s = 0; // a pass in every sync run
  return cfg;
}

/// The stored `d` field of session `id`.
std::string stored(test::redis_probe& rc, const config::config& cfg, const std::string& id) {
  return rc.command({"HGET", model::key_layout{cfg.redis.key_prefix}.session(id), "d"}).str;
}

json status(client& c) {
  return json::parse(c.get("/v1/status").body)["encryption"];
}

/// Syncs until a whole rotation pass ended after this call; its counts.
json full_pass(client& c) {
  auto before = status(c)["passes"].get<std::uint64_t>();
  for (int i = 0; i < 500; ++i) {
    admin_sync(c);
    auto s = status(c);
    if (s["passes"].get<std::uint64_t>() > before)
      return s["last_pass"];
  }
  FAIL("no rotation pass finished");
  return {};
}

} // namespace

TEST_CASE("with encryption on, Redis holds no plaintext of a session's data; GET, PATCH and the "
          "listing return it") {
  test::temp_file f{""};
  f.write("# test keys\n" + key_line("k1", 'a'));
  auto cfg = enc_config(f);
  running_node n(cfg);
  client c(n.port);
  REQUIRE(c.put("/v1/sessions/e1", body("eu", R"({"card":"4111-1111","name":"hunter2"})")).status ==
          201);
  test::redis_probe rc(cfg.redis.url);
  auto raw = stored(rc, cfg, "e1");
  CHECK(crypto::is_envelope(raw));
  CHECK(crypto::envelope_key_id(raw) == "k1");
  CHECK(raw.find("hunter2") == std::string::npos);
  CHECK(raw.find("4111") == std::string::npos);
  auto got = c.get("/v1/sessions/e1");
  REQUIRE(got.status == 200);
  CHECK(json::parse(got.body)["data"] == json::parse(R"({"card":"4111-1111","name":"hunter2"})"));
  auto patched = c.patch("/v1/sessions/e1", R"({"card":null,"n":2})");
  REQUIRE(patched.status == 200);
  CHECK(json::parse(patched.body)["data"] == json::parse(R"({"name":"hunter2","n":2})"));
  raw = stored(rc, cfg, "e1");
  CHECK(crypto::is_envelope(raw));
  CHECK(raw.find("hunter2") == std::string::npos);
  CHECK(json::parse(c.get("/v1/sessions/e1").body)["data"] ==
        json::parse(R"({"name":"hunter2","n":2})"));
  auto listed = json::parse(c.get("/v1/users/eu/sessions").body);
  REQUIRE(listed["sessions"].size() == 1);
  CHECK(listed["sessions"][0]["data"] == json::parse(R"({"name":"hunter2","n":2})"));
  auto s = status(c);
  CHECK(s["enabled"] == true);
  CHECK(s["current_key"] == "k1");
}

TEST_CASE("a value copied onto another session's hash does not decrypt: 500, counted, never "
          "served, and a PATCH does not overwrite it") {
  test::temp_file f{""};
  f.write(key_line("k1", 'a'));
  auto cfg = enc_config(f);
  running_node n(cfg);
  client c(n.port);
  REQUIRE(c.put("/v1/sessions/victim", body("v", R"({"secret":"victim's"})")).status == 201);
  REQUIRE(c.put("/v1/sessions/mine", body("m", R"({"x":1})")).status == 201);
  test::redis_probe rc(cfg.redis.url);
  model::key_layout keys{cfg.redis.key_prefix};
  auto copied = stored(rc, cfg, "victim");
  rc.command({"HSET", keys.session("mine"), "d", copied});
  auto got = c.get("/v1/sessions/mine");
  CHECK(got.status == 500);
  CHECK(got.header("Content-Type") == "application/problem+json");
  auto p = json::parse(got.body);
  CHECK(p["type"] == "urn:sessiond:problem:undecryptable");
  CHECK(p["detail"].get<std::string>().find("\"k1\"") != std::string::npos);
  CHECK(got.body.find("victim's") == std::string::npos);
  CHECK(c.patch("/v1/sessions/mine", R"({"y":2})").status == 500);
  CHECK(stored(rc, cfg, "mine") == copied); // untouched
  CHECK(status(c)["errors"]["auth_failed"].get<int>() >= 2);
  CHECK(c.get("/metrics").body.find("sessiond_encryption_errors_total{reason=\"auth_failed\"}") !=
        std::string::npos);
}

TEST_CASE("rotation: a new first key seals new writes, old values still read, and the pass moves "
          "every value to the new key, counted per key id in /v1/status") {
  test::temp_file f{""};
  f.write(key_line("k1", 'a'));
  auto cfg = enc_config(f);
  running_node n(cfg);
  client c(n.port);
  for (int i = 0; i < 30; ++i)
    REQUIRE(c.put("/v1/sessions/r" + std::to_string(i),
                  body("ru", R"({"i":)" + std::to_string(i) + "}"))
                .status == 201);
  auto first = full_pass(c);
  // SCAN returns every key at least once, and may return one twice while Redis rehashes: the
  // counts are at least the values there are (docs/security.md).
  CHECK(first["by_key"]["k1"].get<int>() >= 30);
  f.write(key_line("k2", 'b') + key_line("k1", 'a'));
  REQUIRE(n.node.reload_encryption());
  CHECK(status(c)["current_key"] == "k2");
  CHECK(json::parse(c.get("/v1/sessions/r3").body)["data"] == json::parse(R"({"i":3})"));
  REQUIRE(c.put("/v1/sessions/r30", body("ru", R"({"i":30})")).status == 201);
  test::redis_probe rc(cfg.redis.url);
  CHECK(crypto::envelope_key_id(stored(rc, cfg, "r30")) == "k2");
  REQUIRE(c.patch("/v1/sessions/r4", R"({"p":1})").status == 200); // a write re-seals
  CHECK(crypto::envelope_key_id(stored(rc, cfg, "r4")) == "k2");
  CHECK(crypto::envelope_key_id(stored(rc, cfg, "r5")) == "k1");
  auto version = c.get("/v1/sessions/r5").header("ETag");
  auto pass = full_pass(c);
  CHECK(pass["by_key"]["k2"].get<int>() >= 31);
  CHECK(pass["by_key"].count("k1") == 0);
  CHECK(pass["plaintext"] == 0);
  for (int i = 0; i <= 30; ++i)
    CHECK(crypto::envelope_key_id(stored(rc, cfg, "r" + std::to_string(i))) == "k2");
  CHECK(c.get("/v1/sessions/r5").header("ETag") == version); // re-sealing is not a write
  CHECK(json::parse(c.get("/v1/sessions/r5").body)["data"] == json::parse(R"({"i":5})"));
  CHECK(status(c)["rotated"].get<int>() >= 29);
  // The old key can go now.
  f.write(key_line("k2", 'b'));
  REQUIRE(n.node.reload_encryption());
  CHECK(c.get("/v1/sessions/r7").status == 200);
  auto metrics = c.get("/metrics").body;
  CHECK(metrics.find("sessiond_encryption_values{key_id=\"k2\"} 31") != std::string::npos);
}

TEST_CASE("a missing key: 500 problem naming the key id, counted, the value untouched in Redis "
          "(GET, PATCH, PUT, PUT If-Match), set aside by the sync; readable once the key is back") {
  test::temp_file f{""};
  f.write(key_line("gone-1", 'a'));
  auto cfg = enc_config(f);
  running_node n(cfg);
  client c(n.port);
  REQUIRE(c.put("/v1/sessions/m1", body("mu", R"({"a":1})")).status == 201);
  admin_sync(c);
  REQUIRE(c.patch("/v1/sessions/m1", R"({"b":2})").status == 200); // dirty again, under gone-1
  test::redis_probe rc(cfg.redis.url);
  auto before = stored(rc, cfg, "m1");
  f.write(key_line("new-2", 'b'));
  REQUIRE(n.node.reload_encryption());
  auto got = c.get("/v1/sessions/m1");
  REQUIRE(got.status == 500);
  CHECK(got.header("Content-Type") == "application/problem+json");
  auto p = json::parse(got.body);
  CHECK(p["status"] == 500);
  CHECK(p["detail"].get<std::string>().find("key \"gone-1\"") != std::string::npos);
  CHECK(c.patch("/v1/sessions/m1", R"({"c":3})").status == 500);
  auto put = c.put("/v1/sessions/m1", body("mu", R"({"fresh":true})"));
  CHECK(put.status == 500);
  CHECK(put.body.find("gone-1") != std::string::npos);
  CHECK(c.put("/v1/sessions/m1", body("mu", "{}"), {{"If-Match", "\"2\""}}).status == 500);
  CHECK(c.get("/v1/users/mu/sessions").status == 500);
  CHECK(stored(rc, cfg, "m1") == before); // never overwritten
  CHECK(status(c)["errors"]["key_missing"].get<int>() >= 5);
  CHECK(c.get("/metrics").body.find("sessiond_encryption_errors_total{reason=\"key_missing\"}") !=
        std::string::npos);
  // The sync does not write it to PostgreSQL: it is set aside, naming the key.
  auto report = admin_sync(c);
  CHECK(report["rejected"] == 1);
  CHECK(one(cfg, "select data::text from user_session where session_id = 'm1'") == R"({"a": 1})");
  auto rejected = json::parse(c.get("/v1/admin/sync/rejected").body);
  REQUIRE(rejected["count"] == 1);
  CHECK(rejected["sessions"][0]["error"].get<std::string>().find("gone-1") != std::string::npos);
  auto pass = full_pass(c);
  CHECK(pass["by_key"]["gone-1"].get<int>() >= 1); // counted, left as it is
  CHECK(stored(rc, cfg, "m1") == before);
  // The key comes back: the session reads again, a requeue syncs it.
  f.write(key_line("new-2", 'b') + key_line("gone-1", 'a'));
  REQUIRE(n.node.reload_encryption());
  CHECK(json::parse(c.get("/v1/sessions/m1").body)["data"] == json::parse(R"({"a":1,"b":2})"));
  REQUIRE(c.call(bhttp::verb::post, "/v1/admin/sync/rejected/requeue").status == 200);
  admin_sync(c);
  CHECK(one(cfg, "select data::text from user_session where session_id = 'm1'") ==
        R"({"a": 1, "b": 2})");
  // A revoke needs no data: it works on a value whose key is missing, and reaches PostgreSQL.
  f.write(key_line("new-2", 'b'));
  REQUIRE(n.node.reload_encryption());
  REQUIRE(c.put("/v1/sessions/m2", body("mu", "{}")).status == 201); // under new-2
  CHECK(c.del("/v1/sessions/m1").status == 204);
  admin_sync(c);
  CHECK(one(cfg, "select status from user_session where session_id = 'm1'") == "REVOKED");
}

TEST_CASE("plaintext sessions stay readable when encryption is turned on, and are sealed by their "
          "next write and by the pass") {
  test::temp_file f{""};
  f.write(key_line("k1", 'a'));
  auto cfg = enc_config(f);
  cfg.encryption.keys_file.clear();
  test::redis_probe rc(cfg.redis.url);
  {
    running_node plain(cfg);
    client c(plain.port);
    for (auto id : {"p1", "p2", "p3"})
      REQUIRE(c.put(std::string("/v1/sessions/") + id, body("pu", R"({"plain":"text"})")).status ==
              201);
    CHECK(stored(rc, cfg, "p1") == R"({"plain":"text"})");
    CHECK(status(c)["enabled"] == false);
  }
  cfg.encryption.keys_file = f.path;
  running_node n(cfg);
  client c(n.port);
  CHECK(json::parse(c.get("/v1/sessions/p1").body)["data"] == json::parse(R"({"plain":"text"})"));
  REQUIRE(c.patch("/v1/sessions/p1", R"({"more":1})").status == 200);
  CHECK(crypto::envelope_key_id(stored(rc, cfg, "p1")) == "k1");
  CHECK(stored(rc, cfg, "p2") == R"({"plain":"text"})");
  auto pass = full_pass(c);
  CHECK(pass["by_key"]["k1"].get<int>() >= 3);
  CHECK(pass["by_key"].size() == 1);
  CHECK(pass["plaintext"] == 0);
  for (auto id : {"p2", "p3"}) {
    CHECK(crypto::envelope_key_id(stored(rc, cfg, id)) == "k1");
    CHECK(json::parse(c.get(std::string("/v1/sessions/") + id).body)["data"] ==
          json::parse(R"({"plain":"text"})"));
  }
}

TEST_CASE("the sync writes decrypted jsonb to PostgreSQL; a read-through seals the row again "
          "when it puts it back into Redis") {
  test::temp_file f{""};
  f.write(key_line("k1", 'a'));
  auto cfg = enc_config(f);
  running_node n(cfg);
  client c(n.port);
  REQUIRE(c.put("/v1/sessions/s1", body("su", R"({"cart":[1,2],"who":"x"})")).status == 201);
  REQUIRE(c.put("/v1/sessions/s2", body("su", "{}")).status == 201);
  REQUIRE(c.del("/v1/sessions/s2").status == 204);
  CHECK(admin_sync(c)["synced"] == 2);
  CHECK(one(cfg, "select data->>'who' from user_session where session_id = 's1'") == "x");
  CHECK(one(cfg, "select count(*) from user_session where data @> '{\"cart\":[1]}'") == "1");
  test::redis_probe rc(cfg.redis.url);
  rc.command({"DEL", model::key_layout{cfg.redis.key_prefix}.session("s1")});
  auto got = c.get("/v1/sessions/s1");
  REQUIRE(got.status == 200);
  CHECK(json::parse(got.body)["data"] == json::parse(R"({"cart":[1,2],"who":"x"})"));
  auto raw = stored(rc, cfg, "s1");
  CHECK(crypto::envelope_key_id(raw) == "k1");
  CHECK(raw.find("cart") == std::string::npos);
}

TEST_CASE("a keys file that cannot be used stops start-up with one line naming it, never a key") {
  test::temp_file f{""};
  auto cfg = enc_config(f);
  auto secret = crypto::base64_encode(std::string(31, 'z'));
  f.write("k1:" + secret + "\n");
  app::node node(cfg);
  try {
    node.start();
    FAIL("started");
  } catch (const config::config_error& e) {
    std::string what = e.what();
    CHECK(what == "config: encryption: keys file \"" + f.path +
                      "\" holds a key that does not decode to 32 bytes (line 1)");
    CHECK(what.find(secret) == std::string::npos);
  }
}

TEST_CASE("a reload with a bad keys file keeps the keys loaded before") {
  test::temp_file f{""};
  f.write(key_line("k1", 'a'));
  auto cfg = enc_config(f);
  running_node n(cfg);
  client c(n.port);
  REQUIRE(c.put("/v1/sessions/b1", body("bu", R"({"a":1})")).status == 201);
  f.write("k2:not-base64\n");
  CHECK_FALSE(n.node.reload_encryption());
  CHECK(status(c)["current_key"] == "k1");
  CHECK(c.get("/v1/sessions/b1").status == 200);
}

TEST_CASE("with encryption on, cache values are sealed in Redis too; one copied to another key is "
          "a miss, never served") {
  test::temp_file f{""};
  f.write(key_line("k1", 'a'));
  auto cfg = enc_config(f);
  cfg.cache.namespaces["plain"].ttl_s = 60; // no loader
  running_node n(cfg);
  client c(n.port);
  REQUIRE(c.put("/v1/cache/plain/a", R"({"secret":"hunter2"})").status == 204);
  test::redis_probe rc(cfg.redis.url);
  auto raw = rc.command({"GET", cfg.redis.key_prefix + "c{plain:a}"}).str;
  CHECK(crypto::envelope_key_id(raw) == "k1");
  CHECK(raw.find("hunter2") == std::string::npos);
  CHECK(json::parse(c.get("/v1/cache/plain/a").body) == json::parse(R"({"secret":"hunter2"})"));
  auto cfg2 = cfg; // a second node has no near cache: it reads Redis
  cfg2.node.id = "test-node-2";
  running_node n2(cfg2);
  client c2(n2.port);
  auto got = c2.get("/v1/cache/plain/a");
  REQUIRE(got.status == 200);
  CHECK(json::parse(got.body) == json::parse(R"({"secret":"hunter2"})"));
  rc.command({"SET", cfg.redis.key_prefix + "c{plain:b}", raw});
  auto copied = c2.get("/v1/cache/plain/b");
  CHECK(copied.status == 404);
  CHECK(copied.body.find("hunter2") == std::string::npos);
  CHECK(json::parse(c2.get("/v1/status").body)["cache"]["undecryptable"] == 1);
}

TEST_CASE("with encryption on, concurrent PATCHes of different fields through two nodes each keep "
          "their change (a retry merges on the sealed fields the write script sends back)") {
  test::temp_file f{""};
  f.write(key_line("k1", 'a'));
  auto cfg = enc_config(f);
  running_node n1(cfg);
  auto cfg2 = cfg;
  cfg2.node.id = "test-node-2";
  running_node n2(cfg2);
  REQUIRE(client(n1.port).put("/v1/sessions/race", body("ru", "{}")).status == 201);
  constexpr int writers = 4, rounds = 25;
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < writers; ++t)
    threads.emplace_back([&, t] {
      client c(t % 2 == 0 ? n1.port : n2.port);
      auto field = "f" + std::to_string(t);
      for (int i = 0; i < rounds; ++i)
        if (c.patch("/v1/sessions/race", "{\"" + field + "\":" + std::to_string(i) + "}").status ==
            200)
          ok++;
    });
  for (auto& t : threads)
    t.join();
  CHECK(ok == writers * rounds);
  auto j = json::parse(client(n2.port).get("/v1/sessions/race").body);
  for (int t = 0; t < writers; ++t)
    CHECK(j["data"]["f" + std::to_string(t)] == rounds - 1);
  CHECK(j["version"] == writers * rounds + 1);
  test::redis_probe rc(cfg.redis.url);
  CHECK(crypto::envelope_key_id(stored(rc, cfg, "race")) == "k1");
}

TEST_CASE("with encryption on, job payloads and results are sealed in Redis; the lease and GET "
          "see plaintext; a payload copied to another queue or under a missing key is never run") {
  test::temp_file f{""};
  f.write(key_line("k1", 'a'));
  auto cfg = enc_config(f);
  running_node n(cfg);
  client c(n.port);
  test::redis_probe rc(cfg.redis.url);
  auto job_key = [&](const std::string& q, const std::string& id) {
    return cfg.redis.key_prefix + "{q:" + q + "}:j:" + id;
  };
  auto enqueue = [&](const std::string& q, const std::string& payload) {
    auto r = c.call(bhttp::verb::post, "/v1/queues/" + q + "/jobs",
                    R"({"type":"send","payload":)" + payload + "}");
    REQUIRE(r.status == 201);
    return json::parse(r.body)["id"].get<std::string>();
  };
  auto lease = [&](const std::string& q) {
    auto r = c.call(bhttp::verb::post, "/v1/queues/" + q + "/lease", R"({"max":10})");
    REQUIRE(r.status == 200);
    return json::parse(r.body)["jobs"];
  };
  auto job = [&](const std::string& q, const std::string& id) {
    return c.get("/v1/queues/" + q + "/jobs/" + id);
  };

  auto a = enqueue("mailq", R"({"to":"alice@example.com"})");
  auto raw = rc.command({"HGET", job_key("mailq", a), "p"}).str;
  CHECK(crypto::envelope_key_id(raw) == "k1");
  CHECK(raw.find("alice") == std::string::npos);
  CHECK(json::parse(job("mailq", a).body)["payload"]["to"] == "alice@example.com");
  auto leased = lease("mailq");
  REQUIRE(leased.size() == 1);
  CHECK(leased[0]["payload"]["to"] == "alice@example.com");
  auto done =
      c.call(bhttp::verb::post, "/v1/queues/mailq/jobs/" + a + "/complete",
             json{{"lease_token", leased[0]["lease_token"]}, {"result", {{"receipt", "r-secret"}}}}
                 .dump());
  REQUIRE(done.status == 204);
  auto raw_result = rc.command({"HGET", job_key("mailq", a), "r"}).str;
  CHECK(crypto::envelope_key_id(raw_result) == "k1");
  CHECK(raw_result.find("r-secret") == std::string::npos);
  CHECK(json::parse(job("mailq", a).body)["result"]["receipt"] == "r-secret");

  // A payload copied onto a job of another queue does not open there: GET 500, the lease fails
  // the job without handing it out.
  auto b = enqueue("otherq", R"({"to":"bob@example.com"})");
  rc.command({"HSET", job_key("otherq", b), "p", raw});
  auto copied = job("otherq", b);
  CHECK(copied.status == 500);
  CHECK(copied.header("Content-Type") == "application/problem+json");
  CHECK(copied.body.find("alice") == std::string::npos);
  CHECK(lease("otherq").empty());
  CHECK(json::parse(c.get("/v1/queues/otherq").body)["failed"] == 1);

  // A key taken out of the file: the job fails naming the key id, and runs once the key is back.
  auto m = enqueue("mailq", R"({"to":"carol@example.com"})");
  f.write(key_line("k2", 'b'));
  REQUIRE(n.node.reload_encryption());
  auto missing = job("mailq", m);
  REQUIRE(missing.status == 500);
  CHECK(json::parse(missing.body)["detail"].get<std::string>().find("key \"k1\"") !=
        std::string::npos);
  CHECK(lease("mailq").empty());
  CHECK(json::parse(c.get("/v1/queues/mailq").body)["failed"] == 1);
  CHECK(json::parse(c.get("/v1/status").body)["queues"]["undecryptable"].get<int>() >= 4);
  f.write(key_line("k2", 'b') + key_line("k1", 'a'));
  REQUIRE(n.node.reload_encryption());
  auto failed = json::parse(job("mailq", m).body);
  CHECK(failed["state"] == "failed");
  CHECK(failed["error"].get<std::string>().find("\"k1\"") != std::string::npos);
  CHECK(failed["attempts"] == 1);
  REQUIRE(c.call(bhttp::verb::post, "/v1/queues/mailq/jobs/" + m + "/retry").status == 204);
  auto again = lease("mailq");
  REQUIRE(again.size() == 1);
  CHECK(again[0]["payload"]["to"] == "carol@example.com");
  // New jobs are sealed under the new first key.
  auto d = enqueue("mailq", "{}");
  CHECK(crypto::envelope_key_id(rc.command({"HGET", job_key("mailq", d), "p"}).str) == "k2");
}
