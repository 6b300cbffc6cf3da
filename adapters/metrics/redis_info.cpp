// Parses Redis INFO / CONFIG GET text into redis_info and keeps the sessiond_redis_* metrics.
#include "adapters/metrics/redis_info.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstdlib>

namespace sessiond::metrics {

namespace {

std::optional<std::uint64_t> to_u64(std::string_view s) {
  std::uint64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || end != s.data() + s.size() || s.empty())
    return std::nullopt;
  return v;
}

std::optional<double> to_double(std::string_view s) {
  if (s.empty() || s.size() > 64)
    return std::nullopt;
  std::string copy(s); // strtod needs a terminator; from_chars(double) is not in every libstdc++
  char* end = nullptr;
  double v = std::strtod(copy.c_str(), &end);
  if (end != copy.c_str() + copy.size() || !std::isfinite(v) || v < 0)
    return std::nullopt;
  return v;
}

/// Splits `k1=v1,k2=v2` (keyspace and commandstats values) and hands each pair to `f`.
template <class F>
void for_each_pair(std::string_view s, F f) {
  while (!s.empty()) {
    auto comma = s.find(',');
    auto item = s.substr(0, comma);
    auto eq = item.find('=');
    if (eq != std::string_view::npos)
      f(item.substr(0, eq), item.substr(eq + 1));
    s = comma == std::string_view::npos ? std::string_view{} : s.substr(comma + 1);
  }
}

bool is_db_name(std::string_view s) {
  return s.size() > 2 && s.size() <= 6 && s.substr(0, 2) == "db" &&
         std::all_of(s.begin() + 2, s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

/// Adds the number `v` to `field`; false when `v` is not a number.
bool add_to(std::uint64_t& field, std::string_view v) {
  auto n = to_u64(v);
  if (n)
    field += *n;
  return n.has_value();
}

bool parse_keyspace(std::string_view value, keyspace_stats& out) {
  bool ok = true;
  out = keyspace_stats{};
  for_each_pair(value, [&](std::string_view k, std::string_view v) {
    if (k == "keys")
      ok &= add_to(out.keys, v);
    else if (k == "expires")
      ok &= add_to(out.expires, v);
  });
  return ok;
}

/// Adds to `out`: Redis 7 lists each subcommand on its own line.
bool parse_cmdstat(std::string_view value, command_stats& out) {
  bool ok = true;
  for_each_pair(value, [&](std::string_view k, std::string_view v) {
    if (k == "calls")
      ok &= add_to(out.calls, v);
    else if (k == "usec")
      ok &= add_to(out.usec, v);
  });
  return ok;
}

/// One `name:value` line; false when a field we read does not parse.
bool parse_field(std::string_view name, std::string_view value, redis_info& out) {
  struct u64_field {
    std::string_view name;
    std::uint64_t redis_info::*member;
  };
  static constexpr std::array<u64_field, 6> u64_fields{{
      {"used_memory", &redis_info::used_memory},
      {"evicted_keys", &redis_info::evicted_keys},
      {"expired_keys", &redis_info::expired_keys},
      {"total_commands_processed", &redis_info::total_commands_processed},
      {"connected_clients", &redis_info::connected_clients},
      {"blocked_clients", &redis_info::blocked_clients},
  }};
  for (const auto& f : u64_fields) {
    if (f.name == name) {
      out.*f.member = 0;
      return add_to(out.*f.member, value);
    }
  }
  if (name == "maxmemory") {
    out.maxmemory = 0;
    return add_to(*out.maxmemory, value);
  }
  if (name == "instantaneous_ops_per_sec") {
    auto d = to_double(value);
    out.instantaneous_ops_per_sec = d.value_or(0);
    return d.has_value();
  }
  if (name == "maxmemory_policy")
    out.maxmemory_policy = std::string(value);
  else if (name == "run_id")
    out.run_id = std::string(value);
  else if (name == "redis_version")
    out.redis_version = std::string(value);
  else if (is_db_name(name))
    return parse_keyspace(value, out.keyspace[std::string(name)]);
  else if (name.substr(0, 8) == "cmdstat_") {
    auto full = name.substr(8);
    auto cmd = full.substr(0, full.find('|')); // Redis 7: script|load → script
    if (tracked_command(cmd))
      return parse_cmdstat(value, out.commands[std::string(cmd)]);
  }
  return true;
}

} // namespace

errc parse_info(std::string_view text, redis_info& out) {
  bool ok = true;
  bool used = false, evicted = false, clients = false;
  while (!text.empty()) {
    auto nl = text.find('\n');
    auto line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    if (!line.empty() && line.back() == '\r')
      line.remove_suffix(1);
    auto colon = line.find(':');
    if (line.empty() || line.front() == '#' || colon == std::string_view::npos)
      continue;
    auto name = line.substr(0, colon);
    used |= name == "used_memory";
    evicted |= name == "evicted_keys";
    clients |= name == "connected_clients";
    ok &= parse_field(name, line.substr(colon + 1), out);
  }
  return ok && used && evicted && clients ? errc::ok : errc::malformed;
}

errc parse_config_get(const std::vector<std::string>& flat,
                      std::map<std::string, std::string>& out) {
  if (flat.size() % 2 != 0)
    return errc::malformed;
  for (std::size_t i = 0; i < flat.size(); i += 2)
    out[flat[i]] = flat[i + 1];
  return errc::ok;
}

errc apply_config(const std::map<std::string, std::string>& config, redis_info& out) {
  auto policy = config.find("maxmemory-policy");
  if (out.maxmemory_policy.empty() && policy != config.end())
    out.maxmemory_policy = policy->second;
  auto max = config.find("maxmemory");
  if (out.maxmemory || max == config.end())
    return errc::ok;
  auto n = to_u64(max->second);
  if (!n)
    return errc::malformed;
  out.maxmemory = *n;
  return errc::ok;
}

bool tracked_command(std::string_view name) {
  // Sorted; what sessiond sends itself (the scripts' HSET/ZADD/… are counted by Redis too).
  static constexpr std::array<std::string_view, 25> names{
      "config", "del",  "eval", "evalsha", "exists",    "get",           "hdel", "hgetall",
      "hmget",  "hset", "info", "pexpire", "pexpireat", "ping",          "pttl", "publish",
      "script", "set",  "zadd", "zcard",   "zrange",    "zrangebyscore", "zrem", "zremrangebyscore",
      "zscore"};
  return std::binary_search(names.begin(), names.end(), name);
}

eviction_risk classify_policy(std::string_view policy) {
  if (policy.empty())
    return eviction_risk::unknown;
  if (policy == "noeviction")
    return eviction_risk::none;
  if (policy.substr(0, 9) == "volatile-")
    return eviction_risk::keys_with_ttl;
  return eviction_risk::any_key;
}

bool eviction_unsafe(std::string_view policy) {
  return classify_policy(policy) == eviction_risk::any_key;
}

std::string eviction_warning(std::string_view policy) {
  const std::string p(policy);
  switch (classify_policy(policy)) {
  case eviction_risk::any_key:
    return "redis: maxmemory-policy " + p +
           " may evict any key once Redis is full: sessions, dirty sets (writes not yet in "
           "PostgreSQL) and queues; set maxmemory-policy noeviction on the Redis that holds "
           "sessions and queues (keep caches on another Redis)";
  case eviction_risk::keys_with_ttl:
    return "redis: maxmemory-policy " + p +
           " never evicts dirty sets or queues, but once Redis is full it evicts sessions "
           "before their TTL, and a session whose last write is not in PostgreSQL yet loses "
           "it; set maxmemory-policy noeviction on the Redis that holds sessions and queues";
  case eviction_risk::none:
  case eviction_risk::unknown:
    break;
  }
  return {};
}

// --- metrics ----------------------------------------------------------------------------

namespace {

/// Policy names as label values: Redis's spelling, or "invalid" for anything that is not a
/// short lower-case word (the reply is untrusted; one series at a time exists anyway).
std::string policy_label(const std::string& p) {
  bool word = !p.empty() && p.size() <= 32 && std::all_of(p.begin(), p.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
  });
  return word ? p : "invalid";
}

} // namespace

redis_info_metrics::redis_info_metrics(Registry& r)
    : used_(add_gauge(r, "sessiond_redis_memory_used_bytes",
                      "Memory Redis has allocated for its data (INFO used_memory).")),
      max_(add_gauge(r, "sessiond_redis_memory_max_bytes",
                     "Redis maxmemory; 0 means no limit (INFO maxmemory).")),
      ratio_(add_gauge(r, "sessiond_redis_memory_used_ratio",
                       "used_memory / maxmemory; 0 when Redis has no limit.")),
      connected_(add_gauge(r, "sessiond_redis_connected_clients", "Clients connected to Redis.")),
      blocked_(add_gauge(r, "sessiond_redis_blocked_clients",
                         "Redis clients blocked in a blocking command.")),
      unsafe_(add_gauge(r, "sessiond_redis_eviction_unsafe",
                        "1 when Redis's maxmemory-policy may evict keys without a TTL (dirty sets, "
                        "queues): anything but noeviction or volatile-*.")),
      ops_(add_gauge(r, "sessiond_redis_instantaneous_ops_per_second",
                     "Commands per second Redis processed over its last ~1.6 s.")),
      evicted_{&add_counter(r, "sessiond_redis_evicted_keys_total",
                            "Keys Redis evicted because of maxmemory.")},
      expired_{&add_counter(r, "sessiond_redis_expired_keys_total", "Keys Redis expired (TTL).")},
      commands_{&add_counter(r, "sessiond_redis_commands_processed_total",
                             "Commands Redis processed, from every client.")},
      poll_errors_(add_counter(r, "sessiond_redis_info_poll_errors_total",
                               "Polls of Redis INFO that failed or returned unparsable text.")),
      keys_family_(BuildGauge()
                       .Name("sessiond_redis_keyspace_keys")
                       .Help("Keys per Redis database.")
                       .Register(r)),
      expires_family_(BuildGauge()
                          .Name("sessiond_redis_keyspace_expiring_keys")
                          .Help("Keys carrying a TTL per Redis database.")
                          .Register(r)),
      policy_family_(BuildGauge()
                         .Name("sessiond_redis_maxmemory_policy_info")
                         .Help("1 for Redis's current maxmemory-policy.")
                         .Register(r)),
      calls_family_(BuildCounter()
                        .Name("sessiond_redis_command_calls_total")
                        .Help("Calls of the commands sessiond uses, as Redis counts them "
                              "(INFO commandstats, script calls included).")
                        .Register(r)),
      duration_family_(BuildCounter()
                           .Name("sessiond_redis_command_duration_seconds_total")
                           .Help("Time Redis spent executing the commands sessiond uses "
                                 "(INFO commandstats usec).")
                           .Register(r)) {}

void redis_info_metrics::update(const redis_info& info, std::chrono::system_clock::time_point now) {
  std::lock_guard<std::mutex> guard{mtx_};
  bool restarted = first_ || info.run_id != run_id_;
  first_ = false;
  run_id_ = info.run_id;
  auto max = info.maxmemory.value_or(0);
  double ratio = max > 0 ? static_cast<double>(info.used_memory) / static_cast<double>(max) : 0;
  used_.Set(static_cast<double>(info.used_memory));
  max_.Set(static_cast<double>(max));
  ratio_.Set(ratio);
  connected_.Set(static_cast<double>(info.connected_clients));
  blocked_.Set(static_cast<double>(info.blocked_clients));
  ops_.Set(info.instantaneous_ops_per_sec);
  evicted_.advance(info.evicted_keys, restarted);
  expired_.advance(info.expired_keys, restarted);
  commands_.advance(info.total_commands_processed, restarted);
  update_keyspace(info);
  update_commands(info, restarted);
  update_policy(info.maxmemory_policy);

  snapshot_.valid = true;
  snapshot_.used_memory_bytes = info.used_memory;
  snapshot_.maxmemory_bytes = max;
  snapshot_.memory_ratio = ratio;
  snapshot_.maxmemory_policy = info.maxmemory_policy;
  snapshot_.eviction_unsafe = eviction_unsafe(info.maxmemory_policy);
  snapshot_.evicted_keys = static_cast<std::uint64_t>(evicted_.counter->Value());
  snapshot_.ops_per_s = info.instantaneous_ops_per_sec;
  snapshot_.connected_clients = info.connected_clients;
  snapshot_.polled_at = now;
}

void redis_info_metrics::update_keyspace(const redis_info& info) {
  for (const auto& [db, stats] : info.keyspace) {
    auto it = keyspace_.find(db);
    if (it == keyspace_.end())
      it = keyspace_
               .emplace(db, keyspace_gauges{&keys_family_.Add({{"db", db}}),
                                            &expires_family_.Add({{"db", db}})})
               .first;
    it->second.keys->Set(static_cast<double>(stats.keys));
    it->second.expires->Set(static_cast<double>(stats.expires));
  }
  // Redis drops the line of a database that became empty: its series reads 0 then.
  for (auto& [db, g] : keyspace_) {
    if (info.keyspace.count(db) == 0) {
      g.keys->Set(0);
      g.expires->Set(0);
    }
  }
}

void redis_info_metrics::update_commands(const redis_info& info, bool restarted) {
  for (const auto& [cmd, stats] : info.commands) {
    auto it = command_.find(cmd);
    if (it == command_.end()) {
      command_followers f{{&calls_family_.Add({{"cmd", cmd}})},
                          {&duration_family_.Add({{"cmd", cmd}})}};
      it = command_.emplace(cmd, f).first;
    }
    it->second.calls.advance(stats.calls, restarted);
    it->second.usec.advance(stats.usec, restarted, 1e-6);
  }
  // A command missing from commandstats (CONFIG RESETSTAT, a restart) counts from 0 again.
  for (auto& [cmd, f] : command_) {
    if (info.commands.count(cmd) == 0) {
      f.calls.last = 0;
      f.usec.last = 0;
    }
  }
}

void redis_info_metrics::update_policy(const std::string& policy) {
  unsafe_.Set(eviction_unsafe(policy) ? 1 : 0);
  auto label = policy.empty() ? std::string() : policy_label(policy);
  if (label == policy_name_)
    return;
  if (policy_ != nullptr)
    policy_family_.Remove(policy_); // an info metric shows the current value only
  policy_ = label.empty() ? nullptr : &policy_family_.Add({{"policy", label}});
  if (policy_ != nullptr)
    policy_->Set(1);
  policy_name_ = label;
}

void redis_info_metrics::poll_failed() {
  std::lock_guard<std::mutex> guard{mtx_};
  poll_errors_.Increment();
  snapshot_.poll_errors = static_cast<std::uint64_t>(poll_errors_.Value());
}

redis_info_snapshot redis_info_metrics::latest() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return snapshot_;
}

} // namespace sessiond::metrics
