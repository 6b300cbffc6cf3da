// Integration tests of the Redis INFO metrics: a redis_poller against a private redis-server
// with a small maxmemory, read back through the /metrics text of the registry.
#include "adapters/metrics/redis_info.hpp"
#include "adapters/metrics/text_serializer.hpp"
#include "adapters/redis/blocking.hpp"
#include "adapters/redis/client.hpp"
#include "app/redis_poller.hpp"
#include "support.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include <future>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

using namespace sessiond;
using namespace std::chrono_literals;

namespace {

using test::io_threads;

redis::reply call(redis::client& c, std::vector<std::string> args) {
  auto w = redis::command_wait(c, 0, std::move(args), std::chrono::seconds(10));
  if (w.error != redis::errc::ok)
    w.value.str = std::string("transport: ") + redis::to_string(w.error);
  return std::move(w.value);
}

/// The value of the sample `name` (with its labels, if any) in an exposition.
std::optional<double> sample(const std::string& text, const std::string& name) {
  auto at = text.find("\n" + name + " ");
  if (at == std::string::npos)
    return std::nullopt;
  return std::stod(text.substr(at + name.size() + 2));
}

/// What the poller logged, for the checks on the policy warning.
struct captured_log {
  std::mutex mtx;
  std::vector<std::pair<app::log_level, std::string>> lines;
  app::redis_poller::log_sink sink() {
    return [this](app::log_level l, const std::string& s) {
      std::lock_guard<std::mutex> g{mtx};
      lines.emplace_back(l, s);
    };
  }
  bool has(app::log_level l, const std::string& part) {
    std::lock_guard<std::mutex> g{mtx};
    for (auto& [level, line] : lines)
      if (level == l && line.find(part) != std::string::npos)
        return true;
    return false;
  }
};

/// A private Redis with a client, a registry and a poller polling every 100 ms.
struct fixture {
  test::private_redis server;
  io_threads threads;
  std::unique_ptr<redis::client> client;
  metrics::Registry registry;
  metrics::redis_info_metrics info{registry};
  captured_log log;
  std::unique_ptr<app::redis_poller> poller;

  explicit fixture(const std::string& policy, const std::string& maxmemory = "0") {
    redis::client_options o;
    std::string error;
    REQUIRE(redis::parse_url(server.url(), o, error));
    client = std::make_unique<redis::client>(threads.io, o);
    client->start();
    REQUIRE(test::eventually([&] { return client->connected(); }));
    REQUIRE(call(*client, {"CONFIG", "SET", "maxmemory", maxmemory}).str == "OK");
    REQUIRE(call(*client, {"CONFIG", "SET", "maxmemory-policy", policy}).str == "OK");
    poller = std::make_unique<app::redis_poller>(threads.io, *client, info, 100ms, log.sink());
    poller->start();
  }
  ~fixture() {
    poller->stop();
    client->stop();
  }

  std::string text() const { return metrics::serialize(registry); }
  std::optional<double> value(const std::string& name) const { return sample(text(), name); }
};

} // namespace

TEST_CASE("filling a Redis with allkeys-lru moves the memory ratio near 1 and counts evictions") {
  fixture f("allkeys-lru", "2mb");
  REQUIRE(test::eventually([&] { return f.info.latest().valid; }));
  CHECK(f.value("sessiond_redis_memory_max_bytes") == 2097152);
  CHECK(f.value("sessiond_redis_evicted_keys_total") == 0);
  CHECK(*f.value("sessiond_redis_memory_used_ratio") < 0.8);

  const std::string value(1000, 'x');
  for (int i = 0; i < 5000; ++i) // ~5 MB into 2 MB: Redis must evict
    REQUIRE(call(*f.client, {"SET", "fill:" + std::to_string(i), value}).str == "OK");

  REQUIRE(test::eventually([&] { // a poll that saw the whole fill
    auto sets = f.value("sessiond_redis_command_calls_total{cmd=\"set\"}");
    return sets && *sets >= 5000;
  }));
  auto text = f.text();
  INFO(text);
  auto ratio = sample(text, "sessiond_redis_memory_used_ratio");
  REQUIRE(ratio);
  CHECK(*ratio > 0.9);
  CHECK(*ratio < 1.1);
  CHECK(*sample(text, "sessiond_redis_evicted_keys_total") > 1000);
  CHECK(*sample(text, "sessiond_redis_keyspace_keys{db=\"db0\"}") < 5000);
  CHECK(sample(text, "sessiond_redis_maxmemory_policy_info{policy=\"allkeys-lru\"}") == 1);
  CHECK(sample(text, "sessiond_redis_eviction_unsafe") == 1);
  CHECK(sample(text, "sessiond_redis_info_poll_errors_total") == 0);
  auto snap = f.info.latest();
  CHECK(snap.memory_ratio > 0.9);
  CHECK(snap.evicted_keys > 1000);
  CHECK(snap.maxmemory_policy == "allkeys-lru");
}

TEST_CASE("allkeys-lru warns at start-up naming noeviction; switching to noeviction clears it") {
  fixture f("allkeys-lru");
  REQUIRE(test::eventually([&] { return f.info.latest().valid; }));
  CHECK(f.value("sessiond_redis_eviction_unsafe") == 1);
  CHECK(f.log.has(app::log_level::warn, "maxmemory-policy noeviction"));
  CHECK(f.info.latest().eviction_unsafe);

  REQUIRE(call(*f.client, {"CONFIG", "SET", "maxmemory-policy", "noeviction"}).str == "OK");
  REQUIRE(test::eventually([&] { return f.value("sessiond_redis_eviction_unsafe") == 0; }));
  auto text = f.text();
  CHECK(sample(text, "sessiond_redis_maxmemory_policy_info{policy=\"noeviction\"}") == 1);
  CHECK(text.find("policy=\"allkeys-lru\"") == std::string::npos);
  CHECK(f.log.has(app::log_level::info, "redis: maxmemory-policy noeviction"));
  CHECK_FALSE(f.info.latest().eviction_unsafe);
}

TEST_CASE("with noeviction the gauge is 0 and nothing is logged as a warning") {
  fixture f("noeviction");
  REQUIRE(test::eventually([&] { return f.info.latest().valid; }));
  CHECK(f.value("sessiond_redis_eviction_unsafe") == 0);
  CHECK(f.value("sessiond_redis_memory_max_bytes") == 0);
  CHECK(f.value("sessiond_redis_memory_used_ratio") == 0);
  CHECK(f.log.has(app::log_level::info, "maxmemory-policy noeviction"));
  CHECK_FALSE(f.log.has(app::log_level::warn, ""));
}

TEST_CASE("a Redis restart keeps the counters from going down; a stopped poller stops") {
  fixture f("noeviction");
  REQUIRE(test::eventually([&] { return f.info.latest().valid; }));
  for (int i = 0; i < 50; ++i)
    call(*f.client, {"SET", "k" + std::to_string(i), "v"});
  REQUIRE(test::eventually(
      [&] { return f.value("sessiond_redis_command_calls_total{cmd=\"set\"}") == 50; }));
  auto before = *f.value("sessiond_redis_commands_processed_total");

  f.server.stop();
  f.server.start(); // same port, counters at 0 again
  REQUIRE(test::eventually([&] { return f.client->connected(); }));
  call(*f.client, {"SET", "after", "v"});
  REQUIRE(test::eventually(
      [&] { return f.value("sessiond_redis_command_calls_total{cmd=\"set\"}") == 51; }));
  CHECK(*f.value("sessiond_redis_commands_processed_total") > before);

  f.poller->stop();
  f.poller->stop(); // idempotent
  auto polled = f.info.latest().polled_at;
  std::this_thread::sleep_for(300ms);
  CHECK(f.info.latest().polled_at == polled);
}
