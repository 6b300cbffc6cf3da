// Helpers of the tests that run sessiond nodes on the Redis Cluster of scripts/test
// (SESSIOND_TEST_REDIS_CLUSTER_URL, _PORTS): the config, three nodes, the topology as a client
// sees it, and a check that every cluster node agrees on it.
#pragma once

#include "adapters/redis/client.hpp"
#include "cluster_support.hpp"
#include "io_threads.hpp"
#include "pg_support.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdlib>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace sessiond::test {

/// pg_config() on the cluster.
inline config::config cluster_config() {
  const char* url = std::getenv("SESSIOND_TEST_REDIS_CLUSTER_URL");
  if (url == nullptr)
    FAIL("SESSIOND_TEST_REDIS_CLUSTER_URL is not set: run scripts/test, or `scripts/services "
         "start --redis-cluster` and eval `scripts/services env`");
  auto c = pg_config();
  c.redis.url = url;
  return c;
}

/// Three nodes sharing one key prefix and schema, as a deployment runs them; n[i] is a client of
/// node i % 3.
struct three_nodes {
  std::vector<std::unique_ptr<running_node>> nodes;
  std::vector<std::unique_ptr<client>> clients;
  explicit three_nodes(const config::config& cfg) {
    for (int i = 0; i < 3; ++i) {
      auto c = cfg;
      c.node.id = "cluster-node-" + std::to_string(i);
      nodes.push_back(std::make_unique<running_node>(c));
      clients.push_back(std::make_unique<client>(nodes.back()->port));
    }
  }
  client& operator[](std::size_t i) { return *clients[i % clients.size()]; }
};

template <class Pred>
bool wait_until(Pred pred, std::chrono::milliseconds limit) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > end)
      return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

/// A cluster client of its own, to read the topology (masters, their ids, slots, replicas).
struct topology {
  io_threads t;
  std::unique_ptr<redis::client> c;
  explicit topology(const std::string& url) {
    redis::client_options o;
    std::string err;
    REQUIRE(redis::parse_url(url, o, err));
    c = std::make_unique<redis::client>(t.io, o);
    c->start();
    REQUIRE(wait_until([&] { return c->all_slots_connected() && c->cluster().cluster; },
                       std::chrono::seconds(10)));
  }
  ~topology() { c->stop(); }
  /// The master address owning `slot` now.
  std::string owner(int slot) const {
    for (const auto& s : c->cluster().shards)
      for (auto [lo, hi] : s.slots)
        if (slot >= lo && slot <= hi)
          return s.master.address;
    return {};
  }
};

/// Every node of the cluster sees 3 masters and 3 replicas, none failed (CLUSTER NODES): after a
/// failover the nodes learn the demoted master's new role by gossip, and a topology read from a
/// node that has not yet lists a master without its replica.
inline bool settled() {
  const char* ports = std::getenv("SESSIOND_TEST_REDIS_CLUSTER_PORTS");
  REQUIRE(ports != nullptr);
  std::istringstream in(ports);
  for (std::string port; in >> port;) {
    auto nodes = run_shell("redis-cli -p " + port + " CLUSTER NODES");
    int masters = 0, replicas = 0;
    std::istringstream lines(nodes);
    for (std::string line; std::getline(lines, line);) {
      if (line.find("fail") != std::string::npos || line.find("handshake") != std::string::npos)
        return false;
      masters += line.find("master") != std::string::npos ? 1 : 0;
      replicas += line.find("slave") != std::string::npos ? 1 : 0;
    }
    if (masters != 3 || replicas != 3)
      return false;
  }
  return true;
}

} // namespace sessiond::test
