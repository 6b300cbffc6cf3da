// Redis client: URLs, scripts, and the routing of commands to the connection pools (pool.cpp) —
// one for a single Redis, one per master of a Redis Cluster, found and kept up to date here.
#include "adapters/redis/client.hpp"

#include "adapters/redis/pool.hpp"
#include "adapters/redis/slots.hpp"
#include "model/text.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <system_error>
#include <unordered_map>
#include <unordered_set>
#include <utility>

namespace sessiond::redis {

namespace asio = boost::asio;
using steady = std::chrono::steady_clock;
using error_code = boost::system::error_code;

// --- errc, URL and script --------------------------------------------------------------

const char* to_string(errc e) {
  switch (e) {
  case errc::ok:
    return "ok";
  case errc::disconnected:
    return "disconnected";
  case errc::timeout:
    return "timeout";
  case errc::protocol:
    return "protocol";
  case errc::closed:
    return "closed";
  }
  return "unknown";
}

namespace {

using model::percent_decode;
using model::starts_with_nocase;

bool fail(std::string& error, std::string why) {
  error = std::move(why);
  return false;
}

bool parse_uint(std::string_view s, unsigned long max, unsigned long& out) {
  if (s.empty())
    return false;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc{} && end == s.data() + s.size() && out <= max;
}

/// Splits "host[:port]" or "[v6]:port" into out.host / out.port.
bool parse_host_port(std::string_view hp, client_options& out, std::string& error) {
  model::authority at;
  if (!model::split_authority(hp, at, error))
    return false;
  auto port = at.port;
  bool has_port = at.has_port;
  std::string_view host = at.host;
  out.host = std::string(host);
  unsigned long p = 0;
  if (has_port && (!parse_uint(port, 65535, p) || p == 0)) {
    return fail(error, "bad port '" + std::string(port) + "' (1-65535)");
  }
  if (has_port)
    out.port = static_cast<std::uint16_t>(p);
  return true;
}

bool parse_userinfo(std::string_view info, client_options& out, std::string& error) {
  auto colon = info.find(':');
  if (colon == std::string_view::npos)
    return true; // a user without password: nothing to send
  if (!percent_decode(info.substr(colon + 1), out.password)) {
    return fail(error, "bad %-escape in password");
  }
  return true;
}

bool parse_db(std::string_view path, client_options& out, std::string& error) {
  if (path.empty() || path == "/")
    return true;
  unsigned long db = 0;
  if (!parse_uint(path.substr(1), 1'000'000, db)) {
    return fail(error, "bad database '" + std::string(path.substr(1)) + "' (0-1000000)");
  }
  out.db = static_cast<int>(db);
  return true;
}

bool parse_one(std::string_view url, client_options& out, std::string& error) {
  bool tls = starts_with_nocase(url, "rediss://");
  if (!tls && !starts_with_nocase(url, "redis://"))
    return fail(error, "URL must start with redis:// (or rediss:// for TLS)");
  auto rest = url.substr(tls ? 9 : 8);
  if (rest.find_first_of("?#") != std::string_view::npos) {
    return fail(error, "query and fragment are not supported");
  }
  auto slash = rest.find('/');
  auto authority = rest.substr(0, slash);
  auto path = slash == std::string_view::npos ? std::string_view{} : rest.substr(slash);
  client_options parsed = out;
  parsed.password.clear();
  parsed.port = 6379;
  parsed.db = 0;
  parsed.tls = tls;
  auto at = authority.rfind('@');
  if (at != std::string_view::npos) {
    if (!parse_userinfo(authority.substr(0, at), parsed, error))
      return false;
    authority = authority.substr(at + 1);
  }
  if (!parse_host_port(authority, parsed, error) || !parse_db(path, parsed, error))
    return false;
  out = std::move(parsed);
  return true;
}

} // namespace

bool parse_url(std::string_view url, client_options& out, std::string& error) {
  std::vector<std::string_view> parts;
  for (std::size_t from = 0;;) {
    auto comma = url.find(',', from);
    auto part = url.substr(from, comma == std::string_view::npos ? comma : comma - from);
    while (!part.empty() && part.front() == ' ')
      part.remove_prefix(1);
    while (!part.empty() && part.back() == ' ')
      part.remove_suffix(1);
    parts.push_back(part);
    if (comma == std::string_view::npos)
      break;
    from = comma + 1;
  }
  client_options first = out;
  if (!parse_one(parts.front(), first, error))
    return false;
  first.seeds.clear();
  for (std::size_t i = 1; i < parts.size(); ++i) {
    client_options seed = first;
    if (!parse_one(parts[i], seed, error)) {
      error = "seed " + std::to_string(i + 1) + ": " + error;
      return false;
    }
    if (seed.tls != first.tls || seed.password != first.password || seed.db != first.db)
      return fail(error, "seed " + std::to_string(i + 1) +
                             " differs from the first in scheme, password or database: the "
                             "seeds are nodes of one cluster");
    first.seeds.emplace_back(seed.host, seed.port);
  }
  out = std::move(first);
  return true;
}

script::script(std::string src) : source(std::move(src)) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(source.data(), source.size(), md, &len, EVP_sha1(), nullptr);
  static constexpr char digits[] = "0123456789abcdef";
  sha1.reserve(2 * std::size_t{len});
  for (unsigned int i = 0; i < len; ++i) {
    sha1 += digits[md[i] >> 4];
    sha1 += digits[md[i] & 0xf];
  }
}

// --- client ---------------------------------------------------------------------------------

namespace {

void append_header(std::string& out, char kind, std::size_t n) {
  char buf[24];
  buf[0] = kind;
  auto* end = std::to_chars(buf + 1, buf + sizeof buf - 2, n).ptr;
  *end++ = '\r';
  *end++ = '\n';
  out.append(buf, end);
}

} // namespace

void append_command(std::string& out, std::size_t argc, const char* const* argv,
                    const std::size_t* lens) {
  std::size_t total = 16;
  for (std::size_t i = 0; i < argc; ++i)
    total += lens[i] + 16;
  out.reserve(out.size() + total);
  append_header(out, '*', argc);
  for (std::size_t i = 0; i < argc; ++i) {
    append_header(out, '$', lens[i]);
    out.append(argv[i], lens[i]);
    out.append("\r\n", 2);
  }
}

// --- client: one pool, or one pool per cluster master ---------------------------------------

namespace {

using detail::deliver;
using detail::pool;
using detail::request;

enum class mode : int { unknown, single, cluster };

constexpr std::uint16_t no_master = 0xffff;

/// A topology as read from the cluster: which master's pool serves each slot.
struct topology {
  std::vector<std::shared_ptr<pool>> masters;
  std::vector<std::uint16_t> slot_master = std::vector<std::uint16_t>(slot_count, no_master);
  std::vector<cluster_shard> shards; ///< parallel to masters
  steady::time_point at = steady::now();
};

/// One command on its way through the cluster: kept whole so a redirect can send it again.
struct attempt {
  std::vector<std::string> args, eval_args;
  std::shared_ptr<const script> scr;
  callback cb;
  std::size_t hint = 0;
  int slot = -1;      ///< -1: keyless, any master
  std::string target; ///< set by MOVED / ASK, or by command_at (pinned)
  bool asking = false;
  bool pinned = false;
  int wait_replicas = 0, wait_timeout_ms = 0;
  int redirects = 0;
  unsigned waits = 0;
  steady::time_point deadline;
};

bool has_prefix(const reply& r, std::string_view p) {
  return r.is_error() && r.str.compare(0, p.size(), p) == 0 &&
         (r.str.size() == p.size() || r.str[p.size()] == ' ');
}

/// "MOVED 3999 127.0.0.1:6381" / "ASK …": the address; empty when unreadable.
std::string redirect_address(const std::string& s) {
  auto last = s.rfind(' ');
  return last == std::string::npos ? std::string() : s.substr(last + 1);
}

/// Splits a cluster address (host:port, [v6]:port) into its parts.
bool split_address(const std::string& a, std::string& host, std::uint16_t& port) {
  auto colon = a.rfind(':');
  if (colon == std::string::npos || colon + 1 == a.size())
    return false;
  unsigned long p = 0;
  if (!parse_uint(std::string_view(a).substr(colon + 1), 65535, p) || p == 0)
    return false;
  host = a.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  port = static_cast<std::uint16_t>(p);
  return !host.empty();
}

const reply* field(const reply& map, std::string_view name) {
  for (std::size_t i = 0; i + 1 < map.elements.size(); i += 2)
    if (map.elements[i].str == name)
      return &map.elements[i + 1];
  return nullptr;
}

std::string text_field(const reply& map, std::string_view name) {
  const reply* f = field(map, name);
  if (f == nullptr)
    return {};
  return f->type == reply::kind::integer ? std::to_string(f->integer) : f->str;
}

/// One shard of a CLUSTER SHARDS reply (Redis 7): a map of slots and nodes.
bool parse_shard(const reply& s, bool tls, cluster_shard& out) {
  const reply* slots = field(s, "slots");
  const reply* nodes = field(s, "nodes");
  if (slots == nullptr || nodes == nullptr)
    return false;
  for (std::size_t i = 0; i + 1 < slots->elements.size(); i += 2)
    out.slots.emplace_back(static_cast<int>(slots->elements[i].integer),
                           static_cast<int>(slots->elements[i + 1].integer));
  bool have_master = false;
  for (const auto& n : nodes->elements) {
    cluster_node node;
    node.id = text_field(n, "id");
    std::string host = text_field(n, "endpoint");
    if (host.empty() || host == "?")
      host = text_field(n, "ip");
    std::string port = text_field(n, tls ? "tls-port" : "port");
    node.address = detail::address_of(host, static_cast<std::uint16_t>(std::atoi(port.c_str())));
    node.health = text_field(n, "health");
    if (text_field(n, "role") == "master" && !have_master) {
      out.master = std::move(node);
      have_master = true;
    } else {
      out.replicas.push_back(std::move(node));
    }
  }
  return have_master && !out.slots.empty();
}

std::vector<cluster_shard> parse_shards(const reply& r, bool tls) {
  std::vector<cluster_shard> out;
  for (const auto& s : r.elements) {
    cluster_shard shard;
    if (parse_shard(s, tls, shard))
      out.push_back(std::move(shard));
  }
  return out;
}

/// CLUSTER SLOTS (before Redis 7): [start, end, master, replica…] per range; grouped by master.
std::vector<cluster_shard> parse_slots(const reply& r) {
  std::vector<cluster_shard> out;
  auto node_of = [](const reply& n) {
    cluster_node node;
    if (n.elements.size() >= 2)
      node.address =
          detail::address_of(n.elements[0].str, static_cast<std::uint16_t>(n.elements[1].integer));
    if (n.elements.size() >= 3)
      node.id = n.elements[2].str;
    return node;
  };
  for (const auto& range : r.elements) {
    if (range.elements.size() < 3)
      continue;
    cluster_node master = node_of(range.elements[2]);
    auto it = std::find_if(out.begin(), out.end(), [&](const cluster_shard& s) {
      return s.master.address == master.address;
    });
    if (it == out.end()) {
      out.emplace_back();
      it = std::prev(out.end());
      it->master = master;
      for (std::size_t i = 3; i < range.elements.size(); ++i)
        it->replicas.push_back(node_of(range.elements[i]));
    }
    it->slots.emplace_back(static_cast<int>(range.elements[0].integer),
                           static_cast<int>(range.elements[1].integer));
  }
  return out;
}

client_stats& operator+=(client_stats& a, const client_stats& b) {
  a.errors += b.errors;
  a.reconnects += b.reconnects;
  a.connections_up += b.connections_up;
  return a;
}

} // namespace

struct client::impl : std::enable_shared_from_this<client::impl> {
  impl(const std::vector<asio::io_context*>& l, client_options o)
      : loops(l),
        opts(std::move(o)),
        strand(asio::make_strand(*loops.front())),
        refresh_timer(strand),
        tick_timer(strand) {}

  const std::vector<asio::io_context*> loops;
  const client_options opts;
  asio::strand<asio::io_context::executor_type> strand; ///< refreshes and retry timers
  asio::steady_timer refresh_timer, tick_timer;
  std::shared_ptr<pool> first; ///< the first seed: all there is to a single Redis
  std::atomic<int> mode_{static_cast<int>(mode::unknown)};
  std::atomic<bool> started{false}, stopped{false};
  std::atomic<std::uint64_t> commands{0}, moved{0}, asked{0}, retried{0}, refreshes{0};

  mutable std::mutex mu;                                        // pools, topo, retired
  std::unordered_map<std::string, std::shared_ptr<pool>> pools; ///< by address
  std::shared_ptr<const topology> topo;
  client_stats retired; ///< counts of pools dropped since

  // On the strand only:
  bool refreshing = false, refresh_again = false, refresh_armed = false;
  steady::time_point last_refresh{};

  std::mutex notify_mu;
  std::function<void(bool)> on_state;
  bool reported_up = false;

  mode current() const { return static_cast<mode>(mode_.load(std::memory_order_acquire)); }

  std::shared_ptr<const topology> snapshot() const {
    std::lock_guard<std::mutex> lk(mu);
    return topo;
  }

  std::vector<std::shared_ptr<pool>> all_pools() const {
    std::lock_guard<std::mutex> lk(mu);
    std::vector<std::shared_ptr<pool>> out;
    out.reserve(pools.size());
    for (const auto& [address, p] : pools)
      out.push_back(p);
    return out;
  }

  /// The pool for host:port, made (and started, when the client runs) on first use.
  ///
  /// The new pool's state callback is set before `mu` is taken: a pool runs that callback
  /// holding its own notify mutex, and the callback takes `mu` (report_state), so setting it
  /// under `mu` would take the two in the opposite order (ThreadSanitizer reports the
  /// inversion). Two threads making the same pool at once both build one; the second drops its
  /// own, which never started.
  std::shared_ptr<pool> pool_at(const std::string& host, std::uint16_t port) {
    auto address = detail::address_of(host, port);
    {
      std::lock_guard<std::mutex> lk(mu);
      if (auto it = pools.find(address); it != pools.end())
        return it->second;
    }
    client_options o = opts;
    o.host = host;
    o.port = port;
    o.seeds.clear();
    auto p = std::make_shared<pool>(loops, std::move(o));
    p->on_state_change([w = weak_from_this()](bool up) {
      if (auto self = w.lock())
        self->on_pool_state(up);
    });
    std::lock_guard<std::mutex> lk(mu);
    if (auto it = pools.find(address); it != pools.end())
      return it->second;
    pools.emplace(address, p);
    if (started && !stopped)
      p->start();
    return p;
  }

  std::shared_ptr<pool> pool_named(const std::string& address) {
    {
      std::lock_guard<std::mutex> lk(mu);
      if (auto it = pools.find(address); it != pools.end())
        return it->second;
    }
    std::string host;
    std::uint16_t port = 0;
    if (!split_address(address, host, port))
      return nullptr;
    return pool_at(host, port);
  }

  // --- state ---

  void on_pool_state(bool up) {
    mode m = current();
    if ((up && m == mode::unknown) || (!up && m == mode::cluster))
      request_refresh();
    report_state();
  }

  void report_state() {
    bool up = false;
    for (const auto& p : all_pools())
      up = up || p->connected();
    std::lock_guard<std::mutex> lk(notify_mu);
    if (up == reported_up)
      return;
    reported_up = up;
    if (on_state && !stopped)
      on_state(up);
  }

  // --- sending ---

  void submit(std::size_t hint, request&& r) {
    ++commands;
    if (current() == mode::single) {
      if (first->try_submit(hint, r))
        return;
      return first->refuse(hint, std::move(r.cb), stopped ? errc::closed : errc::disconnected);
    }
    auto a = std::make_shared<attempt>();
    a->hint = hint;
    a->cb = std::move(r.cb);
    a->scr = std::move(r.scr);
    a->eval_args = std::move(r.eval_args);
    a->args = std::move(r.args);
    a->wait_replicas = r.wait_replicas;
    a->wait_timeout_ms = r.wait_timeout_ms;
    if (a->scr)
      a->slot = a->args.empty() ? -1 : key_slot(a->args.front());
    else if (auto k = key_position(a->args); k != no_key)
      a->slot = key_slot(a->args[k]);
    a->deadline = steady::now() + opts.command_timeout;
    send(a);
  }

  void submit_at(const std::string& address, std::size_t hint, request&& r) {
    ++commands;
    auto a = std::make_shared<attempt>();
    a->hint = hint;
    a->cb = std::move(r.cb);
    a->args = std::move(r.args);
    a->target = address;
    a->pinned = true;
    a->deadline = steady::now() + opts.command_timeout;
    send(a);
  }

  /// The pool a command goes to now: its redirect target, its slot's master, else any master.
  std::shared_ptr<pool> route(const attempt& a) {
    if (!a.target.empty())
      return pool_named(a.target);
    auto t = snapshot();
    if (!t || t->masters.empty())
      return first;
    if (a.slot < 0)
      return t->masters[a.hint % t->masters.size()];
    auto m = t->slot_master[static_cast<std::size_t>(a.slot)];
    return m == no_master ? nullptr : t->masters[m];
  }

  void send(const std::shared_ptr<attempt>& a) {
    if (stopped)
      return first->refuse(a->hint, std::move(a->cb), errc::closed);
    auto p = route(*a);
    if (p) {
      request r{a->args,          a->eval_args,      a->scr, nullptr, a->asking,
                a->wait_replicas, a->wait_timeout_ms};
      r.cb = [w = weak_from_this(), a](errc e, reply&& rep) {
        auto self = w.lock();
        if (!self)
          return deliver(a->cb, e == errc::ok ? errc::closed : e, reply{});
        self->on_result(a, e, std::move(rep));
      };
      if (p->try_submit(a->hint, r))
        return;
    }
    // No connection there: a master just found (from a redirect or the topology) is worth a
    // short wait while it connects; the seed, a master that was up and went down, or a slot
    // no master serves fail at once, so those requests answer 503 while other slots are served
    // and the topology is read again.
    bool fresh = p && p != first && !p->ever_up() && !p->stopped();
    if (current() == mode::cluster)
      request_refresh();
    if (fresh && wait_then_send(a))
      return;
    (p ? p : first)->refuse(a->hint, std::move(a->cb), stopped ? errc::closed : errc::disconnected);
  }

  /// Sends `a` again after a backoff (5 ms doubling to 100 ms); false when that would pass its
  /// deadline.
  bool wait_then_send(const std::shared_ptr<attempt>& a) {
    auto delay = std::chrono::milliseconds(5) * (1u << std::min(a->waits, 5u));
    delay = std::min(delay, std::chrono::milliseconds(100));
    if (steady::now() + delay >= a->deadline || stopped)
      return false;
    ++a->waits;
    ++retried;
    auto timer = std::make_shared<asio::steady_timer>(strand, delay);
    timer->async_wait([w = weak_from_this(), a, timer](error_code) {
      if (auto self = w.lock())
        return self->send(a);
      deliver(a->cb, errc::closed, reply{});
    });
    return true;
  }

  void on_result(const std::shared_ptr<attempt>& a, errc e, reply&& r) {
    if (e == errc::disconnected && current() == mode::cluster)
      request_refresh();
    if (e != errc::ok || !r.is_error() || a->pinned)
      return deliver(a->cb, e, std::move(r));
    bool is_moved = has_prefix(r, "MOVED");
    bool is_ask = has_prefix(r, "ASK");
    if (is_moved || is_ask) {
      auto address = redirect_address(r.str);
      if (address.empty() || ++a->redirects > opts.max_redirects) {
        r.str = "ERR sessiond: gave up after " + std::to_string(opts.max_redirects) +
                " cluster redirects (last: " + r.str + ")";
        return deliver(a->cb, errc::ok, std::move(r));
      }
      (is_moved ? moved : asked)++;
      if (is_moved)
        request_refresh();
      a->target = std::move(address);
      a->asking = is_ask;
      return send(a);
    }
    if ((has_prefix(r, "TRYAGAIN") || has_prefix(r, "CLUSTERDOWN")) && wait_then_send(a))
      return;
    deliver(a->cb, errc::ok, std::move(r));
  }

  // --- topology ---

  void request_refresh() {
    if (stopped)
      return;
    asio::post(strand, [w = weak_from_this()] {
      if (auto self = w.lock())
        self->refresh_soon();
    });
  }

  /// On the strand: reads the topology now, or as soon as refresh_min_interval allows.
  void refresh_soon() {
    if (stopped || current() == mode::single)
      return;
    if (refreshing) {
      refresh_again = true;
      return;
    }
    auto due = last_refresh + opts.refresh_min_interval;
    if (steady::now() < due) {
      if (!refresh_armed) {
        refresh_armed = true;
        refresh_timer.expires_at(due);
        refresh_timer.async_wait([w = weak_from_this()](error_code ec) {
          auto self = w.lock();
          if (!self)
            return;
          self->refresh_armed = false;
          if (!ec)
            self->refresh_soon();
        });
      }
      return;
    }
    read_topology();
  }

  void read_topology() {
    std::shared_ptr<pool> via;
    if (auto t = snapshot())
      for (const auto& m : t->masters)
        if (m->connected())
          via = m;
    if (!via)
      for (const auto& p : all_pools())
        if (p->connected())
          via = p;
    if (!via)
      return; // a pool coming up asks again
    refreshing = true;
    last_refresh = steady::now();
    ask(via, {"CLUSTER", "SHARDS"});
  }

  void ask(const std::shared_ptr<pool>& via, std::vector<std::string> args) {
    bool shards = args[1] == "SHARDS";
    request r{std::move(args), {}, nullptr, nullptr, false};
    r.cb = [w = weak_from_this(), via = std::weak_ptr<pool>(via), shards](errc e, reply&& rep) {
      auto self = w.lock();
      if (!self)
        return;
      // Weak, like every handler the client posts: a handler left in a stopped io_context
      // must not keep the client (its strand, its timers) alive past the io_context.
      asio::post(self->strand, [w, via, shards, e, rep = std::move(rep)]() mutable {
        if (auto again = w.lock())
          again->on_topology(via, shards, e, std::move(rep));
      });
    };
    if (!via->try_submit(0, r)) {
      refreshing = false;
    }
  }

  void on_topology(const std::weak_ptr<pool>& weak_via, bool shards, errc e, reply&& r) {
    if (stopped)
      return;
    auto via = weak_via.lock();
    if (e == errc::ok && r.is_error() &&
        r.str.find("cluster support disabled") != std::string::npos)
      return become_single();
    if (e == errc::ok && r.is_error() && shards && via)
      return ask(via, {"CLUSTER", "SLOTS"}); // Redis before 7.0
    auto parsed = e == errc::ok && r.type == reply::kind::array
                      ? (shards ? parse_shards(r, opts.tls) : parse_slots(r))
                      : std::vector<cluster_shard>{};
    refreshing = false;
    if (!parsed.empty())
      install(std::move(parsed));
    if (refresh_again) {
      refresh_again = false;
      refresh_soon();
    }
  }

  void become_single() {
    refreshing = false;
    mode_.store(static_cast<int>(mode::single), std::memory_order_release);
    std::vector<std::shared_ptr<pool>> extra;
    {
      std::lock_guard<std::mutex> lk(mu);
      for (auto it = pools.begin(); it != pools.end();)
        if (it->second != first) {
          extra.push_back(it->second);
          retired += it->second->stats();
          it = pools.erase(it);
        } else {
          ++it;
        }
    }
    for (auto& p : extra)
      p->stop();
  }

  void install(std::vector<cluster_shard> shards) {
    auto t = std::make_shared<topology>();
    for (auto& s : shards) {
      std::string host;
      std::uint16_t port = 0;
      if (!split_address(s.master.address, host, port))
        continue;
      auto index = static_cast<std::uint16_t>(t->masters.size());
      t->masters.push_back(pool_at(host, port));
      for (auto [lo, hi] : s.slots)
        for (int slot = std::max(lo, 0); slot <= std::min(hi, slot_count - 1); ++slot)
          t->slot_master[static_cast<std::size_t>(slot)] = index;
      t->shards.push_back(std::move(s));
    }
    if (t->masters.empty())
      return;
    std::vector<std::shared_ptr<pool>> gone;
    {
      std::lock_guard<std::mutex> lk(mu);
      for (auto it = pools.begin(); it != pools.end();) {
        bool master =
            std::find(t->masters.begin(), t->masters.end(), it->second) != t->masters.end();
        if (!master) {
          gone.push_back(it->second);
          retired += it->second->stats();
          it = pools.erase(it);
        } else {
          ++it;
        }
      }
      topo = std::move(t);
    }
    ++refreshes;
    mode_.store(static_cast<int>(mode::cluster), std::memory_order_release);
    for (auto& p : gone)
      p->stop();
    if (!gone.empty())
      report_state();
  }

  /// Reads the topology every refresh_interval, and every 500 ms while a master is down.
  void tick() {
    if (stopped || current() == mode::single)
      return;
    bool all_up = true;
    if (auto t = snapshot())
      for (const auto& m : t->masters)
        all_up = all_up && m->connected();
    refresh_soon();
    tick_timer.expires_after(all_up ? opts.refresh_interval : std::chrono::milliseconds(500));
    tick_timer.async_wait([w = weak_from_this()](error_code ec) {
      if (auto self = w.lock(); self && !ec)
        self->tick();
    });
  }
};

client::client(boost::asio::io_context& io, client_options opts)
    : client(std::vector<boost::asio::io_context*>{&io}, std::move(opts)) {}

client::client(const std::vector<boost::asio::io_context*>& loops, client_options opts) {
  if (loops.empty())
    throw std::invalid_argument("redis: client needs at least one io_context");
  opts.connections = std::max<std::size_t>(1, opts.connections);
  impl_ = std::make_shared<impl>(loops, std::move(opts));
  const auto& o = impl_->opts;
  impl_->first = impl_->pool_at(o.host, o.port);
  for (const auto& [host, port] : o.seeds)
    impl_->pool_at(host, port);
}

client::~client() {
  try {
    stop();
  } catch (...) { // NOLINT(bugprone-empty-catch): only allocation can fail; nothing to do
  }
}

void client::start() {
  if (impl_->started.exchange(true) || impl_->stopped)
    return;
  for (auto& p : impl_->all_pools())
    p->start();
  asio::post(impl_->strand, [w = std::weak_ptr<impl>(impl_)] {
    if (auto self = w.lock())
      self->tick();
  });
}

void client::stop() {
  if (impl_->stopped.exchange(true))
    return;
  {
    std::lock_guard<std::mutex> lk(impl_->notify_mu); // waits out a running notification
    impl_->on_state = nullptr;
  }
  asio::post(impl_->strand, [w = std::weak_ptr<impl>(impl_)] {
    if (auto self = w.lock()) {
      self->refresh_timer.cancel();
      self->tick_timer.cancel();
    }
  });
  for (auto& p : impl_->all_pools())
    p->stop();
}

void client::command(std::size_t conn_hint, std::vector<std::string> args, callback cb) {
  impl_->submit(conn_hint, request{std::move(args), {}, nullptr, std::move(cb), false});
}

void client::eval(std::size_t conn_hint, const script& s, std::vector<std::string> keys,
                  std::vector<std::string> args, callback cb) {
  impl_->submit(conn_hint,
                request{std::move(keys), std::move(args), detail::intern(s), std::move(cb), false});
}

void client::eval_replicated(std::size_t conn_hint, const script& s, std::vector<std::string> keys,
                             std::vector<std::string> args, int replicas,
                             std::chrono::milliseconds wait, callback cb) {
  request r{std::move(keys), std::move(args), detail::intern(s), std::move(cb), false};
  r.wait_replicas = replicas;
  r.wait_timeout_ms = static_cast<int>(wait.count());
  impl_->submit(conn_hint, std::move(r));
}

void client::command_at(const std::string& address, std::size_t conn_hint,
                        std::vector<std::string> args, callback cb) {
  impl_->submit_at(address, conn_hint, request{std::move(args), {}, nullptr, std::move(cb), false});
}

std::size_t client::local_hint(std::size_t hint) const {
  if (auto t = impl_->snapshot(); t && !t->masters.empty())
    return t->masters.front()->local_hint(hint);
  return impl_->first->local_hint(hint);
}

bool client::connected() const {
  for (const auto& p : impl_->all_pools())
    if (p->connected())
      return true;
  return false;
}

bool client::all_slots_connected() const {
  auto t = impl_->snapshot();
  auto how = impl_->current();
  if (how == mode::unknown) // the seed is up, but whether it is one master of many is not known
    return false;
  if (how != mode::cluster || !t)
    return connected();
  for (auto m : t->slot_master)
    if (m == no_master || !t->masters[m]->connected())
      return false;
  return true;
}

cluster_view client::cluster() const {
  cluster_view v;
  auto t = impl_->snapshot();
  if (impl_->current() != mode::cluster || !t)
    return v;
  v.cluster = true;
  v.shards = t->shards;
  for (std::size_t i = 0; i < v.shards.size(); ++i)
    v.shards[i].connected = t->masters[i]->connected();
  v.age_ms = std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - t->at).count();
  return v;
}

std::vector<std::string> client::masters() const {
  std::vector<std::string> out;
  auto t = impl_->snapshot();
  if (impl_->current() == mode::cluster && t)
    for (const auto& m : t->masters)
      out.push_back(m->address());
  else
    out.push_back(impl_->first->address());
  return out;
}

std::string client::last_error() const {
  for (const auto& p : impl_->all_pools())
    if (auto e = p->last_error(); !e.empty())
      return e;
  return {};
}

client_stats client::stats() const {
  client_stats s;
  {
    std::lock_guard<std::mutex> lk(impl_->mu);
    s = impl_->retired;
    s.connections_up = 0;
  }
  for (const auto& p : impl_->all_pools())
    s += p->stats();
  s.commands = impl_->commands.load();
  s.moved = impl_->moved.load();
  s.asked = impl_->asked.load();
  s.retried = impl_->retried.load();
  s.refreshes = impl_->refreshes.load();
  return s;
}

void client::on_state_change(std::function<void(bool up)> f) {
  std::lock_guard<std::mutex> lk(impl_->notify_mu);
  if (!impl_->stopped)
    impl_->on_state = std::move(f);
}

} // namespace sessiond::redis
