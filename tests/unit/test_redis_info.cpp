// Unit tests of the Redis INFO metrics: parsing INFO and CONFIG GET text captured from
// redis-server 7.0, the eviction-policy classification, and the sessiond_redis_* metrics after
// updates, including counters that never go down when Redis restarts.
#include "adapters/metrics/redis_info.hpp"
#include "adapters/metrics/text_serializer.hpp"

#include <catch2/catch.hpp>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

using namespace sessiond::metrics;

namespace {

/// Redis sends INFO with CRLF line ends; the samples below are written with LF.
std::string crlf(const std::string& lf) {
  std::string out;
  for (char c : lf) {
    if (c == '\n')
      out += '\r';
    out += c;
  }
  return out;
}

// `INFO all` of redis-server 7.0.15 with maxmemory 2mb and allkeys-lru after 5000 SETs of
// 1000 bytes (evictions), 20 EVALSHA of an HSET script, keys in db0 and db3.
const std::string info_full_lru = crlf(R"(# Server
redis_version:7.0.15
redis_git_sha1:00000000
redis_git_dirty:0
redis_build_id:ae4d7c971a948f0
redis_mode:standalone
os:Linux 6.18.44-fc-v657 x86_64
arch_bits:64
monotonic_clock:POSIX clock_gettime
multiplexing_api:epoll
atomicvar_api:c11-builtin
gcc_version:12.2.0
process_id:9467
process_supervised:no
run_id:d6ec5f2dd8ef643785d83dba032528798c2d3409
tcp_port:26991
server_time_usec:1795305671733213
uptime_in_seconds:13
uptime_in_days:0
hz:10
configured_hz:10
lru_clock:143559
executable:/tmp/info-cap/redis-server
config_file:
io_threads_active:0

# Clients
connected_clients:1
cluster_connections:0
maxclients:10000
client_recent_max_input_buffer:20480
client_recent_max_output_buffer:0
blocked_clients:0
tracking_clients:0
clients_in_timeout_table:0

# Memory
used_memory:2098896
used_memory_human:2.00M
used_memory_rss:8327168
used_memory_rss_human:7.94M
used_memory_peak:2121872
used_memory_peak_human:2.02M
used_memory_peak_perc:98.92%
used_memory_overhead:921032
used_memory_startup:876376
used_memory_dataset:1177864
used_memory_dataset_perc:96.35%
allocator_allocated:2732640
allocator_active:3133440
allocator_resident:5873664
total_system_memory:25325268992
total_system_memory_human:23.59G
used_memory_lua:37888
used_memory_vm_eval:37888
used_memory_lua_human:37.00K
used_memory_scripts_eval:184
number_of_cached_scripts:1
number_of_functions:0
number_of_libraries:0
used_memory_vm_functions:33792
used_memory_vm_total:71680
used_memory_vm_total_human:70.00K
used_memory_functions:200
used_memory_scripts:384
used_memory_scripts_human:384B
maxmemory:2097152
maxmemory_human:2.00M
maxmemory_policy:allkeys-lru
allocator_frag_ratio:1.15
allocator_frag_bytes:400800
allocator_rss_ratio:1.87
allocator_rss_bytes:2740224
rss_overhead_ratio:1.42
rss_overhead_bytes:2453504
mem_fragmentation_ratio:4.04
mem_fragmentation_bytes:6268320
mem_not_counted_for_evict:0
mem_replication_backlog:0
mem_total_replication_buffers:0
mem_clients_slaves:0
mem_clients_normal:0
mem_cluster_links:0
mem_aof_buffer:0
mem_allocator:jemalloc-5.3.0
active_defrag_running:0
lazyfree_pending_objects:0
lazyfreed_objects:0

# Persistence
loading:0
async_loading:0
current_cow_peak:0
current_cow_size:0
current_cow_size_age:0
current_fork_perc:0.00
current_save_keys_processed:0
current_save_keys_total:0
rdb_changes_since_last_save:5025
rdb_bgsave_in_progress:0
rdb_last_save_time:1795305658
rdb_last_bgsave_status:ok
rdb_last_bgsave_time_sec:-1
rdb_current_bgsave_time_sec:-1
rdb_saves:0
rdb_last_cow_size:0
rdb_last_load_keys_expired:0
rdb_last_load_keys_loaded:0
aof_enabled:0
aof_rewrite_in_progress:0
aof_rewrite_scheduled:0
aof_last_rewrite_time_sec:-1
aof_current_rewrite_time_sec:-1
aof_last_bgrewrite_status:ok
aof_rewrites:0
aof_rewrites_consecutive_failures:0
aof_last_write_status:ok
aof_last_cow_size:0
module_fork_in_progress:0
module_fork_last_cow_size:0

# Stats
total_connections_received:53
total_commands_processed:5075
instantaneous_ops_per_sec:0
total_net_input_bytes:5187797
total_net_output_bytes:32299
total_net_repl_input_bytes:0
total_net_repl_output_bytes:0
instantaneous_input_kbps:0.00
instantaneous_output_kbps:0.00
instantaneous_input_repl_kbps:0.00
instantaneous_output_repl_kbps:0.00
rejected_connections:0
sync_full:0
sync_partial_ok:0
sync_partial_err:0
expired_keys:0
expired_stale_perc:0.00
expired_time_cap_reached_count:0
expire_cycle_cpu_milliseconds:0
evicted_keys:4126
evicted_clients:0
total_eviction_exceeded_time:0
current_eviction_exceeded_time:0
keyspace_hits:1
keyspace_misses:0
pubsub_channels:0
pubsub_patterns:0
pubsubshard_channels:0
latest_fork_usec:0
total_forks:0
migrate_cached_sockets:0
slave_expires_tracked_keys:0
active_defrag_hits:0
active_defrag_misses:0
active_defrag_key_hits:0
active_defrag_key_misses:0
total_active_defrag_time:0
current_active_defrag_time:0
tracking_total_keys:0
tracking_total_items:0
tracking_total_prefixes:0
unexpected_error_replies:0
total_error_replies:0
dump_payload_sanitizations:0
total_reads_processed:381
total_writes_processed:328
io_threaded_reads_processed:0
io_threaded_writes_processed:0
reply_buffer_shrinks:1
reply_buffer_expands:0

# Replication
role:master
connected_slaves:0
master_failover_state:no-failover
master_replid:22fb4a53db843fd4f6f13e7df25b4ae9fc9ea4d9
master_replid2:0000000000000000000000000000000000000000
master_repl_offset:0
second_repl_offset:-1
repl_backlog_active:0
repl_backlog_size:1048576
repl_backlog_first_byte_offset:0
repl_backlog_histlen:0

# CPU
used_cpu_sys:0.007043
used_cpu_user:0.031275
used_cpu_sys_children:0.000000
used_cpu_user_children:0.000000
used_cpu_sys_main_thread:0.007017
used_cpu_user_main_thread:0.031136

# Modules

# Commandstats
cmdstat_evalsha:calls=20,usec=463,usec_per_call=23.15,rejected_calls=0,failed_calls=0
cmdstat_set:calls=5005,usec=1773,usec_per_call=0.35,rejected_calls=0,failed_calls=0
cmdstat_info:calls=2,usec=271,usec_per_call=135.50,rejected_calls=0,failed_calls=0
cmdstat_script|load:calls=21,usec=118,usec_per_call=5.62,rejected_calls=0,failed_calls=0
cmdstat_hset:calls=20,usec=145,usec_per_call=7.25,rejected_calls=0,failed_calls=0
cmdstat_config|get:calls=1,usec=75,usec_per_call=75.00,rejected_calls=0,failed_calls=0
cmdstat_hmget:calls=1,usec=5,usec_per_call=5.00,rejected_calls=0,failed_calls=0
cmdstat_select:calls=5,usec=9,usec_per_call=1.80,rejected_calls=0,failed_calls=0

# Errorstats

# Latencystats
latency_percentiles_usec_evalsha:p50=18.047,p99=74.239,p99.9=74.239
latency_percentiles_usec_set:p50=0.001,p99=1.003,p99.9=10.047
latency_percentiles_usec_info:p50=17.023,p99=254.975,p99.9=254.975
latency_percentiles_usec_script|load:p50=4.015,p99=43.007,p99.9=43.007
latency_percentiles_usec_hset:p50=6.015,p99=35.071,p99.9=35.071
latency_percentiles_usec_config|get:p50=75.263,p99=75.263,p99.9=75.263
latency_percentiles_usec_hmget:p50=5.023,p99=5.023,p99.9=5.023
latency_percentiles_usec_select:p50=2.007,p99=3.007,p99.9=3.007

# Cluster
cluster_enabled:0

# Keyspace
db0:keys=897,expires=0,avg_ttl=0
db3:keys=2,expires=1,avg_ttl=998724
)");

// `INFO all` of the same redis-server restarted (new run_id) with noeviction and no maxmemory,
// after a few SETs with a short TTL (expired keys) and one HSET.
const std::string info_restarted = crlf(R"(# Server
redis_version:7.0.15
redis_git_sha1:00000000
redis_git_dirty:0
redis_build_id:ae4d7c971a948f0
redis_mode:standalone
os:Linux 6.18.44-fc-v657 x86_64
arch_bits:64
monotonic_clock:POSIX clock_gettime
multiplexing_api:epoll
atomicvar_api:c11-builtin
gcc_version:12.2.0
process_id:9985
process_supervised:no
run_id:1088b3f1485fdb17b1b68b5554784f20c9159d4a
tcp_port:26991
server_time_usec:1795305673086987
uptime_in_seconds:1
uptime_in_days:0
hz:10
configured_hz:10
lru_clock:143561
executable:/tmp/info-cap/redis-server
config_file:
io_threads_active:0

# Clients
connected_clients:1
cluster_connections:0
maxclients:10000
client_recent_max_input_buffer:0
client_recent_max_output_buffer:0
blocked_clients:0
tracking_clients:0
clients_in_timeout_table:0

# Memory
used_memory:990936
used_memory_human:967.71K
used_memory_rss:7208960
used_memory_rss_human:6.88M
used_memory_peak:990936
used_memory_peak_human:967.71K
used_memory_peak_perc:100.19%
used_memory_overhead:876792
used_memory_startup:876448
used_memory_dataset:114144
used_memory_dataset_perc:99.70%
allocator_allocated:1760480
allocator_active:1908736
allocator_resident:4579328
total_system_memory:25325268992
total_system_memory_human:23.59G
used_memory_lua:32768
used_memory_vm_eval:32768
used_memory_lua_human:32.00K
used_memory_scripts_eval:0
number_of_cached_scripts:0
number_of_functions:0
number_of_libraries:0
used_memory_vm_functions:33792
used_memory_vm_total:66560
used_memory_vm_total_human:65.00K
used_memory_functions:200
used_memory_scripts:200
used_memory_scripts_human:200B
maxmemory:0
maxmemory_human:0B
maxmemory_policy:noeviction
allocator_frag_ratio:1.08
allocator_frag_bytes:148256
allocator_rss_ratio:2.40
allocator_rss_bytes:2670592
rss_overhead_ratio:1.57
rss_overhead_bytes:2629632
mem_fragmentation_ratio:7.78
mem_fragmentation_bytes:6282832
mem_not_counted_for_evict:0
mem_replication_backlog:0
mem_total_replication_buffers:0
mem_clients_slaves:0
mem_clients_normal:0
mem_cluster_links:0
mem_aof_buffer:0
mem_allocator:jemalloc-5.3.0
active_defrag_running:0
lazyfree_pending_objects:0
lazyfreed_objects:0

# Persistence
loading:0
async_loading:0
current_cow_peak:0
current_cow_size:0
current_cow_size_age:0
current_fork_perc:0.00
current_save_keys_processed:0
current_save_keys_total:0
rdb_changes_since_last_save:5
rdb_bgsave_in_progress:0
rdb_last_save_time:1795305672
rdb_last_bgsave_status:ok
rdb_last_bgsave_time_sec:-1
rdb_current_bgsave_time_sec:-1
rdb_saves:0
rdb_last_cow_size:0
rdb_last_load_keys_expired:0
rdb_last_load_keys_loaded:0
aof_enabled:0
aof_rewrite_in_progress:0
aof_rewrite_scheduled:0
aof_last_rewrite_time_sec:-1
aof_current_rewrite_time_sec:-1
aof_last_bgrewrite_status:ok
aof_rewrites:0
aof_rewrites_consecutive_failures:0
aof_last_write_status:ok
aof_last_cow_size:0
module_fork_in_progress:0
module_fork_last_cow_size:0

# Stats
total_connections_received:7
total_commands_processed:6
instantaneous_ops_per_sec:2
total_net_input_bytes:240
total_net_output_bytes:29
total_net_repl_input_bytes:0
total_net_repl_output_bytes:0
instantaneous_input_kbps:0.10
instantaneous_output_kbps:0.01
instantaneous_input_repl_kbps:0.00
instantaneous_output_repl_kbps:0.00
rejected_connections:0
sync_full:0
sync_partial_ok:0
sync_partial_err:0
expired_keys:3
expired_stale_perc:4.51
expired_time_cap_reached_count:0
expire_cycle_cpu_milliseconds:0
evicted_keys:0
evicted_clients:0
total_eviction_exceeded_time:0
current_eviction_exceeded_time:0
keyspace_hits:0
keyspace_misses:1
pubsub_channels:0
pubsub_patterns:0
pubsubshard_channels:0
latest_fork_usec:0
total_forks:0
migrate_cached_sockets:0
slave_expires_tracked_keys:0
active_defrag_hits:0
active_defrag_misses:0
active_defrag_key_hits:0
active_defrag_key_misses:0
total_active_defrag_time:0
current_active_defrag_time:0
tracking_total_keys:0
tracking_total_items:0
tracking_total_prefixes:0
unexpected_error_replies:0
total_error_replies:0
dump_payload_sanitizations:0
total_reads_processed:13
total_writes_processed:6
io_threaded_reads_processed:0
io_threaded_writes_processed:0
reply_buffer_shrinks:0
reply_buffer_expands:0

# Replication
role:master
connected_slaves:0
master_failover_state:no-failover
master_replid:b59c3fc7b1118b2b5eb9b884ddfd5361b8275252
master_replid2:0000000000000000000000000000000000000000
master_repl_offset:0
second_repl_offset:-1
repl_backlog_active:0
repl_backlog_size:1048576
repl_backlog_first_byte_offset:0
repl_backlog_histlen:0

# CPU
used_cpu_sys:0.005311
used_cpu_user:0.000000
used_cpu_sys_children:0.000000
used_cpu_user_children:0.000000
used_cpu_sys_main_thread:0.005219
used_cpu_user_main_thread:0.000000

# Modules

# Commandstats
cmdstat_hset:calls=1,usec=15,usec_per_call=15.00,rejected_calls=0,failed_calls=0
cmdstat_set:calls=4,usec=37,usec_per_call=9.25,rejected_calls=0,failed_calls=0
cmdstat_get:calls=1,usec=5,usec_per_call=5.00,rejected_calls=0,failed_calls=0

# Errorstats

# Latencystats
latency_percentiles_usec_hset:p50=15.039,p99=15.039,p99.9=15.039
latency_percentiles_usec_set:p50=7.007,p99=15.039,p99.9=15.039
latency_percentiles_usec_get:p50=5.023,p99=5.023,p99.9=5.023

# Cluster
cluster_enabled:0

# Keyspace
db0:keys=2,expires=0,avg_ttl=0
)");

/// `text` with the value of field `name` replaced by `value`.
std::string with_field(std::string text, const std::string& name, const std::string& value) {
  auto at = text.find("\n" + name + ":");
  REQUIRE(at != std::string::npos);
  auto start = at + name.size() + 2;
  text.replace(start, text.find('\r', start) - start, value);
  return text;
}

redis_info parsed(const std::string& text) {
  redis_info info;
  REQUIRE(parse_info(text, info) == errc::ok);
  return info;
}

bool has_line(const std::string& exposition, const std::string& line) {
  return exposition.find("\n" + line + "\n") != std::string::npos;
}

const auto t0 = std::chrono::system_clock::time_point(std::chrono::seconds(1800000000));

} // namespace

// --- parsing -------------------------------------------------------------------------------

TEST_CASE("INFO of a full Redis with allkeys-lru parses into the fields sessiond reads") {
  auto info = parsed(info_full_lru);
  CHECK(info.run_id == "d6ec5f2dd8ef643785d83dba032528798c2d3409");
  CHECK(info.redis_version == "7.0.15");
  CHECK(info.used_memory == 2098896);
  REQUIRE(info.maxmemory);
  CHECK(*info.maxmemory == 2097152);
  CHECK(info.maxmemory_policy == "allkeys-lru");
  CHECK(info.evicted_keys == 4126);
  CHECK(info.expired_keys == 0);
  CHECK(info.total_commands_processed == 5075);
  CHECK(info.instantaneous_ops_per_sec == 0);
  CHECK(info.connected_clients == 1);
  CHECK(info.blocked_clients == 0);
  REQUIRE(info.keyspace.size() == 2);
  CHECK(info.keyspace.at("db0").keys == 897);
  CHECK(info.keyspace.at("db0").expires == 0);
  CHECK(info.keyspace.at("db3").keys == 2);
  CHECK(info.keyspace.at("db3").expires == 1);
}

TEST_CASE("commandstats keeps only the commands sessiond uses, subcommands summed") {
  auto info = parsed(info_full_lru);
  CHECK(info.commands.at("evalsha").calls == 20);
  CHECK(info.commands.at("evalsha").usec == 463);
  CHECK(info.commands.at("hset").calls == 20);
  CHECK(info.commands.at("set").calls == 5005);
  CHECK(info.commands.at("script").calls == 21); // script|load
  CHECK(info.commands.at("config").usec == 75);  // config|get
  CHECK(info.commands.count("select") == 0);     // not one of ours
  for (const auto& [cmd, stats] : info.commands)
    CHECK(tracked_command(cmd));
}

TEST_CASE("INFO with LF line ends and a later Redis's unknown fields still parses") {
  redis_info info;
  CHECK(parse_info("# Memory\nused_memory:10\nsome_future_field:x\nmaxmemory:100\n"
                   "# Stats\nevicted_keys:2\n# Clients\nconnected_clients:3\n",
                   info) == errc::ok);
  CHECK(info.used_memory == 10);
  CHECK(*info.maxmemory == 100);
  CHECK(info.maxmemory_policy.empty()); // absent: left to CONFIG GET
  CHECK(info.evicted_keys == 2);
  CHECK(info.connected_clients == 3);
}

TEST_CASE("INFO that is not a number where sessiond reads one, or lacks a section, is malformed") {
  redis_info info;
  CHECK(parse_info("", info) == errc::malformed);
  CHECK(parse_info("ERR unknown command", info) == errc::malformed);
  CHECK(parse_info(with_field(info_full_lru, "evicted_keys", "many"), info) == errc::malformed);
  CHECK(parse_info(with_field(info_full_lru, "used_memory", "-1"), info) == errc::malformed);
  CHECK(parse_info(with_field(info_full_lru, "instantaneous_ops_per_sec", "nan"), info) ==
        errc::malformed);
  CHECK(parse_info(with_field(info_full_lru, "db0", "keys=x,expires=0"), info) == errc::malformed);
  auto no_memory = info_full_lru.substr(0, info_full_lru.find("# Memory"));
  CHECK(parse_info(no_memory, info) == errc::malformed);
}

TEST_CASE("CONFIG GET maxmemory* fills the limit and policy only where INFO lacked them") {
  std::map<std::string, std::string> config;
  REQUIRE(
      parse_config_get({"maxmemory-policy", "volatile-lru", "maxmemory-eviction-tenacity", "10",
                        "maxmemory-samples", "5", "maxmemory-clients", "0", "maxmemory", "2097152"},
                       config) == errc::ok);
  CHECK(config.at("maxmemory") == "2097152");
  redis_info old_redis;
  REQUIRE(apply_config(config, old_redis) == errc::ok);
  CHECK(*old_redis.maxmemory == 2097152);
  CHECK(old_redis.maxmemory_policy == "volatile-lru");

  auto info = parsed(info_restarted); // INFO's own values win
  REQUIRE(apply_config(config, info) == errc::ok);
  CHECK(*info.maxmemory == 0);
  CHECK(info.maxmemory_policy == "noeviction");

  std::map<std::string, std::string> odd;
  CHECK(parse_config_get({"maxmemory"}, odd) == errc::malformed);
  redis_info bad;
  CHECK(apply_config({{"maxmemory", "lots"}}, bad) == errc::malformed);
}

// --- policy --------------------------------------------------------------------------------

TEST_CASE("only noeviction and volatile-* policies keep dirty sets and queues from eviction") {
  for (const char* p : {"allkeys-lru", "allkeys-lfu", "allkeys-random", "some-future-policy"}) {
    CHECK(classify_policy(p) == eviction_risk::any_key);
    CHECK(eviction_unsafe(p));
  }
  for (const char* p : {"volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl"}) {
    CHECK(classify_policy(p) == eviction_risk::keys_with_ttl);
    CHECK_FALSE(eviction_unsafe(p));
  }
  CHECK(classify_policy("noeviction") == eviction_risk::none);
  CHECK_FALSE(eviction_unsafe("noeviction"));
  CHECK(classify_policy("") == eviction_risk::unknown);
  CHECK_FALSE(eviction_unsafe(""));
}

TEST_CASE("the warning names the policy and the setting to use; noeviction gets none") {
  auto lru = eviction_warning("allkeys-lru");
  CHECK(lru.find("allkeys-lru") != std::string::npos);
  CHECK(lru.find("maxmemory-policy noeviction") != std::string::npos);
  auto volatile_lru = eviction_warning("volatile-lru");
  CHECK(volatile_lru.find("before their TTL") != std::string::npos);
  CHECK(volatile_lru.find("maxmemory-policy noeviction") != std::string::npos);
  CHECK(eviction_warning("noeviction").empty());
  CHECK(eviction_warning("").empty());
}

// --- metrics -------------------------------------------------------------------------------

TEST_CASE("after one poll the metrics show Redis's memory, policy, keyspace and commands") {
  Registry r;
  redis_info_metrics m(r);
  m.update(parsed(info_full_lru), t0);
  auto text = serialize(r);
  CHECK(has_line(text, "sessiond_redis_memory_used_bytes 2098896"));
  CHECK(has_line(text, "sessiond_redis_memory_max_bytes 2097152"));
  CHECK(has_line(text, "sessiond_redis_memory_used_ratio " + format_value(2098896.0 / 2097152)));
  CHECK(has_line(text, "sessiond_redis_evicted_keys_total 4126"));
  CHECK(has_line(text, "sessiond_redis_expired_keys_total 0"));
  CHECK(has_line(text, "sessiond_redis_connected_clients 1"));
  CHECK(has_line(text, "sessiond_redis_blocked_clients 0"));
  CHECK(has_line(text, "sessiond_redis_keyspace_keys{db=\"db0\"} 897"));
  CHECK(has_line(text, "sessiond_redis_keyspace_expiring_keys{db=\"db3\"} 1"));
  CHECK(has_line(text, "sessiond_redis_maxmemory_policy_info{policy=\"allkeys-lru\"} 1"));
  CHECK(has_line(text, "sessiond_redis_eviction_unsafe 1"));
  CHECK(has_line(text, "sessiond_redis_commands_processed_total 5075"));
  CHECK(has_line(text, "sessiond_redis_instantaneous_ops_per_second 0"));
  CHECK(has_line(text, "sessiond_redis_command_calls_total{cmd=\"evalsha\"} 20"));
  CHECK(has_line(text, "sessiond_redis_command_duration_seconds_total{cmd=\"evalsha\"} 0.000463"));
  CHECK(has_line(text, "sessiond_redis_info_poll_errors_total 0"));
  CHECK(text.find("cmd=\"select\"") == std::string::npos);

  auto s = m.latest();
  CHECK(s.valid);
  CHECK(s.used_memory_bytes == 2098896);
  CHECK(s.maxmemory_bytes == 2097152);
  CHECK(s.memory_ratio == Approx(1.0008).epsilon(1e-4));
  CHECK(s.maxmemory_policy == "allkeys-lru");
  CHECK(s.eviction_unsafe);
  CHECK(s.evicted_keys == 4126);
  CHECK(s.polled_at == t0);
}

TEST_CASE("before any poll the snapshot is marked invalid and failed polls are counted") {
  Registry r;
  redis_info_metrics m(r);
  CHECK_FALSE(m.latest().valid);
  m.poll_failed();
  m.poll_failed();
  CHECK(m.latest().poll_errors == 2);
  CHECK(has_line(serialize(r), "sessiond_redis_info_poll_errors_total 2"));
}

TEST_CASE("counters never go down when Redis restarts; gauges and the policy follow it") {
  Registry r;
  redis_info_metrics m(r);
  m.update(parsed(info_full_lru), t0);
  m.update(parsed(info_restarted), t0 + std::chrono::seconds(15));
  auto text = serialize(r);
  CHECK(has_line(text, "sessiond_redis_evicted_keys_total 4126")); // Redis says 0 now
  CHECK(has_line(text, "sessiond_redis_expired_keys_total 3"));
  CHECK(has_line(text, "sessiond_redis_commands_processed_total 5081")); // 5075 + 6
  CHECK(has_line(text, "sessiond_redis_command_calls_total{cmd=\"set\"} 5009"));
  CHECK(has_line(text, "sessiond_redis_command_calls_total{cmd=\"evalsha\"} 20"));
  CHECK(has_line(text, "sessiond_redis_memory_max_bytes 0"));
  CHECK(has_line(text, "sessiond_redis_memory_used_ratio 0"));
  CHECK(has_line(text, "sessiond_redis_keyspace_keys{db=\"db3\"} 0")); // db3 is gone
  CHECK(has_line(text, "sessiond_redis_maxmemory_policy_info{policy=\"noeviction\"} 1"));
  CHECK(text.find("policy=\"allkeys-lru\"") == std::string::npos);
  CHECK(has_line(text, "sessiond_redis_eviction_unsafe 0"));
  CHECK_FALSE(m.latest().eviction_unsafe);

  // Same run: the counter advances by the difference.
  m.update(parsed(with_field(info_restarted, "evicted_keys", "10")), t0);
  CHECK(has_line(serialize(r), "sessiond_redis_evicted_keys_total 4136"));
  // CONFIG RESETSTAT (same run_id, lower value): counted from 0 again.
  m.update(parsed(with_field(info_restarted, "evicted_keys", "4")), t0);
  CHECK(has_line(serialize(r), "sessiond_redis_evicted_keys_total 4140"));
}

TEST_CASE("a restart noticed by its new run_id counts everything since, even above the old value") {
  Registry r;
  redis_info_metrics m(r);
  m.update(parsed(with_field(info_full_lru, "evicted_keys", "100")), t0);
  // Restarted between two polls and already evicted more than before: a drop is not seen.
  m.update(parsed(with_field(info_full_lru, "run_id", "new-run")), t0);
  CHECK(has_line(serialize(r), "sessiond_redis_evicted_keys_total 4226")); // 100 + 4126
  CHECK(m.latest().evicted_keys == 4226);
}

TEST_CASE("the cmd label only takes values from a fixed list of commands") {
  for (const char* c : {"evalsha", "script", "hmget", "hset", "get", "zadd", "zrem", "pexpireat"})
    CHECK(tracked_command(c));
  for (const char* c : {"select", "keys", "flushall", "client", "EVALSHA", ""})
    CHECK_FALSE(tracked_command(c));
}

TEST_CASE("promtool check metrics accepts the Redis INFO metrics") {
  if (std::system("command -v promtool >/dev/null 2>&1") != 0) {
    WARN("promtool is not on PATH (Debian package prometheus): promtool check skipped");
    return;
  }
  Registry r;
  redis_info_metrics m(r);
  m.update(parsed(info_full_lru), t0);
  char path[] = "/tmp/sessiond-redis-info-XXXXXX";
  int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  close(fd);
  std::ofstream(path) << serialize(r);
  std::string cmd = std::string("promtool check metrics < ") + path + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p);
  std::string out;
  char buf[512];
  while (auto n = fread(buf, 1, sizeof buf, p))
    out.append(buf, n);
  int rc = pclose(p);
  std::remove(path);
  INFO(out);
  CHECK(rc == 0);
  CHECK(out.empty());
}
