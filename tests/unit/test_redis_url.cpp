// Unit tests of the Redis adapter's pure parts: URL parsing (cluster seeds too), script SHA-1,
// errc names, RESP encoding, cluster key slots and which argument routes a command.
#include "adapters/redis/client.hpp"
#include "adapters/redis/slots.hpp"

#include <catch2/catch.hpp>
#include <hiredis/hiredis.h>

#include <set>
#include <string>
#include <vector>

using namespace sessiond::redis;

namespace {

client_options parsed(const std::string& url) {
  client_options o;
  std::string error;
  INFO(url);
  REQUIRE(parse_url(url, o, error));
  CHECK(error.empty());
  return o;
}

std::string parse_error(const std::string& url) {
  client_options o;
  o.host = "untouched";
  std::string error;
  INFO(url);
  REQUIRE_FALSE(parse_url(url, o, error));
  CHECK_FALSE(error.empty());
  CHECK(o.host == "untouched"); // a failed parse leaves the options alone
  return error;
}

} // namespace

TEST_CASE("a bare redis URL gets port 6379, db 0 and no password") {
  auto o = parsed("redis://cache.internal");
  CHECK(o.host == "cache.internal");
  CHECK(o.port == 6379);
  CHECK(o.db == 0);
  CHECK(o.password.empty());
}

TEST_CASE("port and db are taken from the URL") {
  auto o = parsed("redis://10.0.0.7:6391");
  CHECK(o.host == "10.0.0.7");
  CHECK(o.port == 6391);
  CHECK(o.db == 0);

  o = parsed("redis://localhost:7000/3");
  CHECK(o.host == "localhost");
  CHECK(o.port == 7000);
  CHECK(o.db == 3);

  CHECK(parsed("redis://h/").db == 0);
  CHECK(parsed("REDIS://h:1/15").db == 15);
}

TEST_CASE("a password is taken from the URL and a user name is ignored") {
  auto o = parsed("redis://:s3cret@db.example:6380/2");
  CHECK(o.password == "s3cret");
  CHECK(o.host == "db.example");
  CHECK(o.port == 6380);
  CHECK(o.db == 2);

  o = parsed("redis://alice:pw@host");
  CHECK(o.password == "pw");
  CHECK(o.host == "host");
  CHECK(o.port == 6379);

  CHECK(parsed("redis://alice@host").password.empty());
  CHECK(parsed("redis://:p%40ss%3Aw%2Fd@host").password == "p@ss:w/d");
  CHECK(parsed("redis://:a@b@host").password == "a@b");
}

TEST_CASE("a bracketed IPv6 host is accepted with or without a port") {
  auto o = parsed("redis://[::1]:6390/1");
  CHECK(o.host == "::1");
  CHECK(o.port == 6390);
  CHECK(o.db == 1);
  CHECK(parsed("redis://[fe80::2]").port == 6379);
}

TEST_CASE("parsing keeps the options the URL does not name") {
  client_options o;
  o.connections = 7;
  o.command_timeout = std::chrono::milliseconds(42);
  o.password = "old";
  std::string error;
  REQUIRE(parse_url("redis://h:1/1", o, error));
  CHECK(o.connections == 7);
  CHECK(o.command_timeout.count() == 42);
  CHECK(o.password.empty()); // the URL names no password, so none is kept
}

TEST_CASE("rediss:// turns TLS on, with the same host, port, password and db rules") {
  auto o = parsed("rediss://:s3cret@cache.internal:6380/2");
  CHECK(o.tls);
  CHECK(o.host == "cache.internal");
  CHECK(o.port == 6380);
  CHECK(o.password == "s3cret");
  CHECK(o.db == 2);
  CHECK(parsed("REDISS://h").port == 6379);
  CHECK_FALSE(parsed("redis://h").tls);
  client_options reused = parsed("rediss://h");
  std::string error;
  REQUIRE(parse_url("redis://h", reused, error));
  CHECK_FALSE(reused.tls); // parsing a redis:// URL turns TLS off again
}

TEST_CASE("other schemes are refused") {
  CHECK(parse_error("http://host:6379").find("redis://") != std::string::npos);
  CHECK(parse_error("http://host:6379").find("rediss://") != std::string::npos);
  parse_error("unix:///tmp/redis.sock");
  parse_error("host:6379");
  parse_error("");
}

TEST_CASE("bad ports are refused") {
  CHECK(parse_error("redis://host:0").find("port") != std::string::npos);
  parse_error("redis://host:65536");
  parse_error("redis://host:");
  parse_error("redis://host:-1");
  parse_error("redis://host:63x9");
  parse_error("redis://host:99999999999999999999999");
  parse_error("redis://[::1]x");
  parse_error("redis://[::1");
}

TEST_CASE("bad databases and missing hosts are refused") {
  CHECK(parse_error("redis://host/abc").find("database") != std::string::npos);
  parse_error("redis://host/-1");
  parse_error("redis://host/1/2");
  parse_error("redis://host/1?timeout=3");
  parse_error("redis://host/99999999999");
  parse_error("redis://");
  parse_error("redis://:pw@:6379");
  parse_error("redis://:bad%zzescape@host");
  parse_error("redis://:trailing%4@host");
}

TEST_CASE("a script carries the hex SHA-1 of its source") {
  // echo -n 'return 1' | sha1sum
  CHECK(script("return 1").sha1 == "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
  // echo -n '' | sha1sum
  CHECK(script("").sha1 == "da39a3ee5e6b4b0d3255bfef95601890afd80709");
  CHECK(script("return 1").source == "return 1");
}

TEST_CASE("every errc value has its own name") {
  std::set<std::string> names;
  for (auto e : {errc::ok, errc::disconnected, errc::timeout, errc::protocol, errc::closed}) {
    std::string n = to_string(e);
    CHECK(n != "unknown");
    names.insert(n);
  }
  CHECK(names.size() == 5);
  CHECK(std::string(to_string(errc::timeout)) == "timeout");
  CHECK(std::string(to_string(static_cast<errc>(99))) == "unknown");
}

TEST_CASE("append_command writes the RESP bytes hiredis' formatter writes") {
  const std::string big(70000, 'x');
  const std::vector<std::vector<std::string>> commands = {
      {"PING"},
      {"GET", "sessiond:s:abc"},
      {"SET", "k", ""},                           // empty argument
      {"SET", "k\r\n*3", std::string("a\0b", 3)}, // CR LF and NUL inside arguments
      {"EVALSHA", "0123456789abcdef0123456789abcdef01234567", "3", "k1", "k2", "k3", big},
  };
  std::string all;
  for (const auto& cmd : commands) {
    std::vector<const char*> argv;
    std::vector<std::size_t> lens;
    for (const auto& a : cmd) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    char* expected = nullptr;
    int len =
        redisFormatCommandArgv(&expected, static_cast<int>(argv.size()), argv.data(), lens.data());
    REQUIRE(len > 0);
    std::string out = "prefix"; // appends, keeps what was there
    append_command(out, argv.size(), argv.data(), lens.data());
    CHECK(out == "prefix" + std::string(expected, static_cast<std::size_t>(len)));
    redisFreeCommand(expected);
    append_command(all, argv.size(), argv.data(), lens.data());
  }
  CHECK(all.rfind("*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$14\r\nsessiond:s:abc\r\n", 0) == 0);
}

TEST_CASE("several comma-separated URLs are the seeds of one cluster") {
  auto o = parsed("redis://:pw@10.0.0.1:7000, redis://:pw@10.0.0.2:7001,redis://:pw@[::1]:7002");
  CHECK(o.host == "10.0.0.1");
  CHECK(o.port == 7000);
  CHECK(o.password == "pw");
  REQUIRE(o.seeds.size() == 2);
  CHECK(o.seeds[0] == std::pair<std::string, std::uint16_t>("10.0.0.2", 7001));
  CHECK(o.seeds[1] == std::pair<std::string, std::uint16_t>("::1", 7002));
  CHECK(parsed("redis://a:1").seeds.empty());
  // A second parse replaces the seeds of the first.
  client_options again = o;
  std::string error;
  REQUIRE(parse_url("redis://b:2", again, error));
  CHECK(again.seeds.empty());
}

TEST_CASE("seeds must agree on scheme, password and database, and each must parse") {
  CHECK(parse_error("redis://a:1,rediss://b:2").find("seed 2") != std::string::npos);
  CHECK(parse_error("redis://:x@a:1,redis://:y@b:2").find("password") != std::string::npos);
  CHECK(parse_error("redis://a:1,redis://b:2/3").find("database") != std::string::npos);
  CHECK(parse_error("redis://a:1,redis://b:0").find("seed 2: bad port") != std::string::npos);
  CHECK(parse_error("redis://a:1,").find("seed 2") != std::string::npos);
}

TEST_CASE("key slots are Redis Cluster's: CRC16 of the hash tag, else of the key") {
  // Values as CLUSTER KEYSLOT answers them (and the cluster spec's examples).
  CHECK(key_slot("foo") == 12182);
  CHECK(key_slot("bar") == 5061);
  CHECK(key_slot("123456789") == 12739); // CRC16/XMODEM check value 0x31C3
  CHECK(key_slot("") == 0);
  // The tag: the first {…} with something inside.
  CHECK(key_slot("{user1000}.following") == key_slot("user1000"));
  CHECK(key_slot("{user1000}.followers") == key_slot("{user1000}.following"));
  CHECK(key_slot("foo{}{bar}") == key_slot("foo{}{bar}"));
  CHECK(key_slot("foo{}{bar}") != key_slot("bar")); // an empty first tag: the whole key
  CHECK(key_slot("foo{{bar}}zap") == key_slot("{bar"));
  CHECK(key_slot("foo{bar}{zap}") == key_slot("bar"));
  CHECK(key_slot("sessiond:{q:mail}:wait") == key_slot("q:mail"));
  CHECK(key_slot("no{close") == key_slot("no{close")); // no closing brace: the whole key
  std::set<std::uint16_t> seen;
  for (int i = 0; i < 100000; ++i)
    seen.insert(key_slot("key:" + std::to_string(i)));
  CHECK(seen.size() > 16000); // every slot is reachable
  CHECK(*seen.rbegin() < slot_count);
}

TEST_CASE("the routing key is the first key of a command, or none for keyless ones") {
  using args = std::vector<std::string>;
  CHECK(key_position(args{"GET", "k"}) == 1);
  CHECK(key_position(args{"hmget", "k", "a"}) == 1);
  CHECK(key_position(args{"EVALSHA", "sha", "2", "k1", "k2", "a"}) == 3);
  CHECK(key_position(args{"EVAL", "return 1", "0"}) == no_key);
  CHECK(key_position(args{"MEMORY", "USAGE", "k"}) == 2);
  CHECK(key_position(args{"OBJECT", "ENCODING", "k"}) == 2);
  for (const char* keyless : {"PING", "INFO", "SCAN", "PUBLISH", "CLUSTER", "SCRIPT", "CONFIG",
                              "WAIT", "DBSIZE", "FLUSHDB", "info"})
    CHECK(key_position(args{keyless, "x", "y"}) == no_key);
  CHECK(key_position(args{"PING"}) == no_key);
  CHECK(key_position(args{}) == no_key);
}
