// See cluster.hpp.
#include "app/cluster.hpp"

#include "adapters/redis/slots.hpp"
#include "app/node_registry.hpp"
#include "model/key_layout.hpp"

#include <nlohmann/json.hpp>

#include <charconv>
#include <map>
#include <memory>
#include <mutex>

namespace sessiond::app {

namespace {

using nlohmann::json;

json node_json(const redis::cluster_node& n) {
  return {{"id", n.id}, {"address", n.address}, {"health", n.health}};
}

/// field → value of an HGETALL reply.
std::map<std::string, std::string> fields(const redis::reply& r) {
  std::map<std::string, std::string> out;
  for (std::size_t i = 0; i + 1 < r.elements.size(); i += 2)
    out[r.elements[i].str] = r.elements[i + 1].str;
  return out;
}

json nodes_json(const redis::reply& registry, const redis::reply& info, const node_identity& self,
                std::int64_t now_ms) {
  auto modes = fields(registry);
  auto infos = fields(info);
  json out = json::array();
  for (const auto& [id, value] : modes) {
    json n{{"id", id}, {"self", id == self.id}};
    auto space = value.find(' ');
    n["mode"] = value.substr(0, space);
    std::int64_t seen = 0;
    if (space != std::string::npos) {
      const char* end = value.data() + value.size();
      std::from_chars(value.data() + space + 1, end, seen);
    }
    n["last_seen_ms"] = seen;
    n["age_ms"] = seen > 0 ? now_ms - seen : -1;
    n["live"] = seen > 0 && now_ms - seen <= registry_live_ms;
    if (auto it = infos.find(id); it != infos.end()) {
      auto j = json::parse(it->second, nullptr, false);
      if (j.is_object())
        for (const char* k : {"address", "version", "started_ms", "sync"})
          if (j.contains(k))
            n[k] = j[k];
    }
    out.push_back(std::move(n));
  }
  return out;
}

} // namespace

std::string node_info_key(const std::string& key_prefix) {
  return key_prefix + "{nodes}info";
}

json ranges_json(const std::vector<std::size_t>& sorted) {
  json out = json::array();
  for (std::size_t i = 0; i < sorted.size();) {
    std::size_t j = i;
    while (j + 1 < sorted.size() && sorted[j + 1] == sorted[j] + 1)
      ++j;
    out.push_back({sorted[i], sorted[j]});
    i = j + 1;
  }
  return out;
}

std::string node_info_value(const node_identity& self, const sync_activity& sync) {
  json s{{"enabled", sync.enabled}};
  if (sync.enabled) {
    s["partitions"] = model::sync_partitions;
    s["last_run_ms"] = sync.last_run_ms;
    s["last_run_partitions"] = ranges_json(sync.last_run);
    s["last_run_partition_count"] = sync.last_run.size();
    s["holding"] = ranges_json(sync.holding);
    s["holding_count"] = sync.holding.size();
  }
  return json{{"address", self.address},
              {"version", self.version},
              {"started_ms", self.started_ms},
              {"sync", std::move(s)}}
      .dump();
}

std::int64_t slots_unserved(const redis::cluster_view& view) {
  if (!view.cluster)
    return 0;
  std::int64_t served = 0;
  for (const auto& s : view.shards)
    if (s.connected)
      for (auto [lo, hi] : s.slots)
        served += hi - lo + 1;
  return redis::slot_count - served;
}

json redis_topology_json(const redis::client& redis) {
  auto view = redis.cluster();
  auto stats = redis.stats();
  json masters = json::array();
  for (const auto& s : view.shards) {
    json ranges = json::array();
    int count = 0;
    for (auto [lo, hi] : s.slots) {
      ranges.push_back({lo, hi});
      count += hi - lo + 1;
    }
    json replicas = json::array();
    for (const auto& r : s.replicas)
      replicas.push_back(node_json(r));
    auto m = node_json(s.master);
    m["slots"] = std::move(ranges);
    m["slot_count"] = count;
    m["connected"] = s.connected;
    m["replicas"] = std::move(replicas);
    masters.push_back(std::move(m));
  }
  if (!view.cluster) // a single Redis: the one server, as the client sees it
    masters.push_back({{"address", redis.masters().front()},
                       {"connected", redis.connected()},
                       {"slot_count", redis::slot_count}});
  return {{"cluster", view.cluster},
          {"masters", std::move(masters)},
          {"all_slots_connected", redis.all_slots_connected()},
          {"slots_unserved", slots_unserved(view)},
          {"topology_age_ms", view.age_ms},
          {"redirects", {{"moved", stats.moved}, {"ask", stats.asked}}},
          {"retries", stats.retried},
          {"refreshes", stats.refreshes}};
}

void answer_cluster(redis::client& redis, const std::string& registry_key,
                    const std::string& key_prefix, const node_identity& self, std::int64_t now_ms,
                    std::function<void(unsigned status, std::string json)> answer) {
  struct state {
    std::mutex mu; // on a cluster the two keys live on different masters: two threads
    redis::reply registry, info;
    int left = 2;
    std::string failed;
  };
  auto st = std::make_shared<state>();
  auto done = [&redis, st, self, now_ms, answer](bool is_registry, redis::errc e,
                                                 redis::reply&& r) {
    std::unique_lock<std::mutex> lk(st->mu);
    if (e != redis::errc::ok || r.is_error())
      st->failed = e != redis::errc::ok ? redis::to_string(e) : r.str;
    else
      (is_registry ? st->registry : st->info) = std::move(r);
    if (--st->left > 0)
      return;
    lk.unlock(); // the other reply is in
    if (!st->failed.empty())
      return answer(503, "Redis did not answer: " + st->failed);
    json j{{"node", self.id},
           {"nodes", nodes_json(st->registry, st->info, self, now_ms)},
           {"redis", redis_topology_json(redis)}};
    answer(200, j.dump());
  };
  redis.command(0, {"HGETALL", registry_key},
                [done](redis::errc e, redis::reply&& r) mutable { done(true, e, std::move(r)); });
  redis.command(0, {"HGETALL", node_info_key(key_prefix)},
                [done](redis::errc e, redis::reply&& r) mutable { done(false, e, std::move(r)); });
}

} // namespace sessiond::app
