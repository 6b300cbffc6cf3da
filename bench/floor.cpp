// `sessiond-bench floor`: sessiond's HTTP server (adapters/http) and Redis client
// (adapters/redis) on one event loop per thread, as the node runs them, with nothing between
// them. With --redis, a GET sends the HMGET the node sends and a PUT runs the node's write
// script with the same keys and arguments; without, every request gets a fixed answer. No
// JSON validation, no session record, no metrics, no actors: what is left is what any node
// built on this HTTP server, this Redis client and this write script must spend, so the
// load generator's throughput against it bounds what sessiond can reach on the same machine.
#include "bench/floor.hpp"

#include "actors/redis_scripts.hpp"
#include "adapters/http/server.hpp"
#include "adapters/redis/client.hpp"
#include "bench/options.hpp"
#include "model/key_layout.hpp"
#include "model/shard_for.hpp"
#include "model/ttl.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include <atomic>
#include <chrono>
#include <csignal>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <thread>

namespace sessiond::bench {

namespace {

namespace asio = boost::asio;

constexpr const char* key_prefix = "sessiond-bench-floor:";
constexpr std::int64_t ttl_s = 3600;
constexpr std::int64_t max_lifetime_s = 86400;

struct floor_args {
  std::string host = "127.0.0.1";
  std::uint16_t port = 18600;
  std::string redis; ///< empty: answer without Redis
  std::size_t threads = 2;
  std::size_t redis_connections = 2;
};

constexpr const char* help =
    R"(usage: sessiond-bench floor [--listen HOST:PORT] [--redis URL] [--threads N]
       [--redis-connections N]

Serves /v1/sessions/{id} with sessiond's HTTP server and Redis client and nothing else, until
SIGINT or SIGTERM, so the load generator can be pointed at it and at sessiond in turn:

  without --redis  every request answers 200 with a fixed 700-byte session body
  with --redis     GET sends the node's HMGET and answers with the stored data; PUT runs the
                   node's write script (version, user index, dirty mark) with the node's keys
                   and arguments; no body validation. Keys go under "sessiond-bench-floor:";
                   sessions expire after an hour, the dirty sets are deleted at exit.

  --listen HOST:PORT       default 127.0.0.1:18600 (port 0 picks a free one)
  --threads N              I/O threads, one event loop each (default 2, as sessiond)
  --redis-connections N    default 2, as sessiond
)";

floor_args parse(const std::vector<std::string>& a, bool& show_help) {
  floor_args f;
  for (std::size_t i = 0; i < a.size(); ++i) {
    auto next = [&]() -> const std::string& {
      if (i + 1 >= a.size())
        throw usage_error(a[i] + " needs a value");
      return a[++i];
    };
    if (a[i] == "--listen") {
      const std::string& v = next();
      auto colon = v.rfind(':');
      if (colon == std::string::npos || colon == 0)
        throw usage_error("--listen: expected HOST:PORT, got \"" + v + "\"");
      f.host = v.substr(0, colon);
      f.port = static_cast<std::uint16_t>(parse_whole("--listen", v.substr(colon + 1), 0, 65535));
    } else if (a[i] == "--redis") {
      f.redis = next();
    } else if (a[i] == "--threads") {
      f.threads = parse_whole("--threads", next(), 1, 64);
    } else if (a[i] == "--redis-connections") {
      f.redis_connections = parse_whole("--redis-connections", next(), 1, 64);
    } else if (a[i] == "--help" || a[i] == "-h") {
      show_help = true;
    } else {
      throw usage_error("unknown option " + a[i] + " (see sessiond-bench floor --help)");
    }
  }
  return f;
}

/// A session body of the size sessiond answers for 512 bytes of data.
std::string fixed_body() {
  return R"({"id":"s-000000001","user_id":"u1","data":{"v":")" + std::string(512, 'x') +
         R"("},"version":3,"status":"ACTIVE","created_at":"2026-11-22T07:00:00.000Z",)"
         R"("last_activity_at":"2026-11-22T07:00:00.000Z","expires_at":"2026-11-22T08:00:00.000Z",)"
         R"("ttl_s":3600})";
}

http::response answer(unsigned status, std::string body) {
  http::response r;
  r.status = status;
  r.body = std::move(body);
  r.headers.emplace_back("ETag", "\"3\"");
  return r;
}

/// The session id of /v1/sessions/{id}; empty for any other target.
std::string session_id(const std::string& target) {
  static constexpr std::string_view route = "/v1/sessions/";
  if (target.compare(0, route.size(), route) != 0)
    return {};
  return target.substr(route.size());
}

/// user_id and data of a body shaped {"user_id":"…","data":…} (the load generator's), without
/// validating anything.
bool split_put_body(const std::string& body, std::string& user, std::string& data) {
  static constexpr std::string_view head = R"({"user_id":")";
  static constexpr std::string_view mid = R"(","data":)";
  auto u = body.find(head);
  auto m = body.find(mid);
  if (u != 0 || m == std::string::npos || body.size() < m + mid.size() + 1)
    return false;
  user = body.substr(head.size(), m - head.size());
  data = body.substr(m + mid.size(), body.size() - m - mid.size() - 1);
  return true;
}

class floor_handler {
public:
  floor_handler(redis::client* rc) : redis_(rc), fixed_(fixed_body()) {}

  void operator()(http::request&& req, http::responder_ptr res) {
    if (!redis_)
      return res->send(answer(200, fixed_));
    auto id = session_id(req.target);
    if (id.empty())
      return res->send(answer(404, "{}"));
    auto hint = redis_->local_hint(next_.fetch_add(1, std::memory_order_relaxed));
    std::string key = layout_.session(id);
    if (req.verb == http::method::get) {
      redis_->command(hint, {"HMGET", key, "v", "u", "st", "ca", "la", "ex", "ttl", "d", "t"},
                      [res](redis::errc e, redis::reply&& r) {
                        if (e != redis::errc::ok || r.elements.size() != 9 ||
                            r.elements[7].type != redis::reply::kind::string)
                          return res->send(answer(e == redis::errc::ok ? 404 : 503, "{}"));
                        res->send(answer(200, R"({"data":)" + r.elements[7].str + "}"));
                      });
      return;
    }
    std::string user, data;
    if (req.verb != http::method::put || !split_put_body(req.body, user, data))
      return res->send(answer(400, "{}"));
    const auto now = model::system_clock().now_ms();
    std::string dirty = layout_.dirty(model::partition_of(id));
    // As sessiond writes: the write script, then on a new session the user index's add.
    redis_->eval(hint, scripts_.write, {std::move(key), std::move(dirty)},
                 {id, user, data, std::to_string(now), std::to_string(ttl_s),
                  std::to_string(max_lifetime_s), "", std::to_string(now + ttl_s * 1000), "0"},
                 [this, res, hint, id, user, now](redis::errc e, redis::reply&& r) {
                   if (e != redis::errc::ok || r.elements.empty())
                     return res->send(answer(503, "{}"));
                   if (r.elements[0].integer != 201)
                     return res->send(answer(200, "{}"));
                   redis_->eval(
                       hint, scripts_.index_add, {layout_.user(user)},
                       {std::to_string(now), id, std::to_string(now),
                        std::to_string(now + max_lifetime_s * 1000)},
                       [res](redis::errc, redis::reply&&) { res->send(answer(201, "{}")); });
                 });
  }

private:
  redis::client* redis_;
  actors::redis_scripts scripts_;
  model::key_layout layout_{key_prefix};
  std::string fixed_;
  std::atomic<std::size_t> next_{0};
};

/// DEL of the dirty sets the write script filled (the sessions expire on their own).
std::vector<std::string> delete_dirty_sets() {
  std::vector<std::string> del{"DEL"};
  model::key_layout layout{key_prefix};
  for (std::size_t i = 0; i < model::sync_partitions; ++i)
    del.push_back(layout.dirty(i));
  return del;
}

} // namespace

int run_floor_server(const std::vector<std::string>& args) {
  floor_args f;
  bool show_help = false;
  try {
    f = parse(args, show_help);
  } catch (const usage_error& e) {
    std::cerr << "sessiond-bench floor: " << e.what() << std::endl;
    return 2;
  }
  if (show_help) {
    std::cout << help;
    return 0;
  }
  std::vector<std::unique_ptr<asio::io_context>> contexts;
  std::vector<asio::io_context*> loops;
  for (std::size_t i = 0; i < f.threads; ++i) {
    contexts.push_back(std::make_unique<asio::io_context>(1));
    loops.push_back(contexts.back().get());
  }
  std::unique_ptr<redis::client> rc;
  if (!f.redis.empty()) {
    redis::client_options ro;
    std::string error;
    if (!redis::parse_url(f.redis, ro, error)) {
      std::cerr << "sessiond-bench floor: --redis: " << error << std::endl;
      return 2;
    }
    ro.connections = f.redis_connections;
    rc = std::make_unique<redis::client>(loops, ro);
    rc->start();
  }
  floor_handler handler(rc.get());
  http::server_options so;
  so.address = f.host;
  so.port = f.port;
  http::server server(loops, so, [&handler](http::request&& req, http::responder_ptr res) {
    handler(std::move(req), std::move(res));
  });
  try {
    auto port = server.start();
    std::cout << "sessiond-bench floor listening on http://" << f.host << ":" << port
              << (rc ? " (HMGET and the write script per request)" : " (fixed answer)")
              << std::endl;
  } catch (const std::exception& e) {
    std::cerr << "sessiond-bench floor: " << e.what() << std::endl;
    return 1;
  }
  asio::signal_set signals(*loops[0], SIGINT, SIGTERM);
  auto stop_loops = [&loops] {
    for (auto* loop : loops)
      loop->stop();
  };
  signals.async_wait([&](const boost::system::error_code&, int) {
    server.stop_accepting();
    if (!rc)
      return stop_loops();
    rc->command(0, delete_dirty_sets(), [&](redis::errc, redis::reply&&) { stop_loops(); });
  });
  std::vector<std::thread> threads;
  for (auto* loop : loops)
    threads.emplace_back([loop] {
      auto work = asio::make_work_guard(*loop);
      loop->run();
    });
  for (auto& t : threads)
    t.join();
  if (rc)
    rc->stop();
  return 0;
}

} // namespace sessiond::bench
