// See store.hpp.
#include "adapters/cache/store.hpp"

#include "adapters/crypto/keyring.hpp"

#include <memory>
#include <vector>

namespace sessiond::cache {

namespace {

using redis::errc;
using redis::reply;

/// Associated data of a cache value: it only opens under its own namespace and key.
std::string value_aad(std::string_view ns, std::string_view key) {
  std::string a = "cache:";
  a += ns;
  a += ':';
  a += key;
  return a;
}

/// KEYS[1] value key; ARGV: encoded entry, PX, channel, message (empty: no PUBLISH).
const redis::script put_script{R"lua(
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if ARGV[4] ~= '' then redis.call('PUBLISH', ARGV[3], ARGV[4]) end
return 1
)lua"};

/// KEYS[1] value key; ARGV: channel, message. Returns the keys removed.
const redis::script invalidate_script{R"lua(
local n = redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return n
)lua"};

/// KEYS[1] lock key; ARGV[1] the holder's token.
const redis::script unlock_script{R"lua(
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
)lua"};

std::string failure(errc e, const reply& r) {
  if (e != errc::ok)
    return std::string("redis: ") + redis::to_string(e);
  return "redis: " + r.str;
}

/// One prefix invalidation in progress: its scan cursor and what it removed so far. SCAN sees
/// one server's keys, so on a Redis Cluster it runs over each master in turn.
struct prefix_run {
  redis::client* redis = nullptr;
  std::size_t hint = 0;
  std::vector<std::string> masters;
  std::size_t master = 0; ///< the one being scanned
  std::string pattern;
  std::string batch;
  std::string channel;
  std::string message;
  std::int64_t removed = 0;
  store::count_fn cb;
};

void scan_step(std::shared_ptr<prefix_run> run, std::string cursor);

void unlink_all(std::shared_ptr<prefix_run> run, std::vector<std::string> keys, std::string next) {
  auto left = std::make_shared<std::size_t>(keys.size());
  auto failed = std::make_shared<std::string>();
  for (auto& k : keys) {
    run->redis->command(run->hint, {"UNLINK", std::move(k)},
                        [run, left, failed, next](errc e, reply&& r) {
                          if (e != errc::ok || r.is_error())
                            *failed = failure(e, r);
                          else
                            run->removed += r.integer;
                          if (--*left > 0)
                            return;
                          if (!failed->empty())
                            return run->cb(false, run->removed, *failed);
                          scan_step(run, next);
                        });
  }
}

void scan_step(std::shared_ptr<prefix_run> run, std::string cursor) {
  if (cursor == "0" && ++run->master < run->masters.size())
    cursor = "start";  // this master is done: the next one
  if (cursor == "0") { // the scan is over: tell every node
    run->redis->command(run->hint, {"PUBLISH", run->channel, run->message},
                        [run](errc e, reply&& r) {
                          bool ok = e == errc::ok && !r.is_error();
                          run->cb(ok, run->removed, ok ? std::string() : failure(e, r));
                        });
    return;
  }
  run->redis->command_at(
      run->masters[run->master], run->hint,
      {"SCAN", cursor == "start" ? "0" : cursor, "MATCH", run->pattern, "COUNT", run->batch},
      [run](errc e, reply&& r) {
        if (e != errc::ok || r.is_error() || r.elements.size() != 2)
          return run->cb(false, run->removed, failure(e, r));
        auto next = r.elements[0].str;
        std::vector<std::string> keys;
        for (auto& k : r.elements[1].elements)
          keys.push_back(std::move(k.str));
        if (keys.empty())
          return scan_step(run, next);
        unlink_all(run, std::move(keys), next);
      });
}

} // namespace

std::string encode(const invalidation& m) {
  return std::string(m.prefix ? "p " : "k ") + m.ns + " " + m.key;
}

bool decode(std::string_view payload, invalidation& out) {
  if (payload.size() < 3 || (payload[0] != 'k' && payload[0] != 'p') || payload[1] != ' ')
    return false;
  auto rest = payload.substr(2);
  auto sp = rest.find(' ');
  if (sp == std::string_view::npos)
    return false;
  invalidation m;
  m.prefix = payload[0] == 'p';
  m.ns = std::string(rest.substr(0, sp));
  m.key = std::string(rest.substr(sp + 1));
  if (!model::valid_cache_namespace(m.ns) ||
      !(m.prefix ? model::valid_cache_prefix(m.key) : model::valid_cache_key(m.key)))
    return false;
  out = std::move(m);
  return true;
}

store::store(redis::client& redis, std::string key_prefix)
    : redis_(redis), prefix_(std::move(key_prefix)), channel_(prefix_ + "cache:invalidate") {}

std::string store::value_key(std::string_view ns, std::string_view key) const {
  std::string k = prefix_;
  k += "c{";
  k += ns;
  k += ':';
  k += key;
  k += '}';
  return k;
}

std::string store::lock_key(std::string_view ns, std::string_view key) const {
  std::string k = prefix_;
  k += "cl{";
  k += ns;
  k += ':';
  k += key;
  k += '}';
  return k;
}

void store::get(std::size_t hint, std::string_view ns, std::string_view key, get_fn cb) {
  std::shared_ptr<const crypto::keyring> ring;
  std::string aad;
  if (keys_ != nullptr) {
    ring = keys_->get();
    aad = value_aad(ns, key);
  }
  redis_.command(hint, {"GET", value_key(ns, key)},
                 [cb = std::move(cb), sealing = keys_ != nullptr, ring = std::move(ring),
                  aad = std::move(aad), bad = undecryptable_](errc e, reply&& r) {
                   if (e != errc::ok || r.is_error())
                     return cb(false, std::nullopt);
                   if (r.type != reply::kind::string)
                     return cb(true, std::nullopt);
                   std::string opened_value;
                   const std::string* stored = &r.str;
                   if (sealing && crypto::is_envelope(r.str)) {
                     auto o = ring ? ring->open(aad, r.str) : crypto::open_without_keys(r.str);
                     if (o.code != crypto::errc::ok) {
                       bad->fetch_add(1, std::memory_order_relaxed);
                       return cb(true, std::nullopt);
                     }
                     opened_value = std::move(o.plaintext);
                     stored = &opened_value;
                   }
                   model::cache_entry entry;
                   if (!model::decode(*stored, entry))
                     return cb(true, std::nullopt);
                   cb(true, std::move(entry));
                 });
}

void store::put(std::size_t hint, std::string_view ns, std::string_view key,
                const model::cache_entry& e, std::int64_t keep_ms, bool publish, done_fn cb) {
  std::string message =
      publish ? encode(invalidation{false, std::string(ns), std::string(key)}) : "";
  auto value = model::encode(e);
  if (keys_ != nullptr)
    if (auto ring = keys_->get())
      value = ring->seal(value_aad(ns, key), value);
  redis_.eval(hint, put_script, {value_key(ns, key)},
              {std::move(value), std::to_string(std::max<std::int64_t>(1, keep_ms)), channel_,
               std::move(message)},
              [cb = std::move(cb)](errc e, reply&& r) {
                bool ok = e == errc::ok && !r.is_error();
                cb(ok, ok ? std::string() : failure(e, r));
              });
}

void store::invalidate(std::size_t hint, std::string_view ns, std::string_view key, count_fn cb) {
  redis_.eval(hint, invalidate_script, {value_key(ns, key)},
              {channel_, encode(invalidation{false, std::string(ns), std::string(key)})},
              [cb = std::move(cb)](errc e, reply&& r) {
                bool ok = e == errc::ok && !r.is_error();
                cb(ok, ok ? r.integer : 0, ok ? std::string() : failure(e, r));
              });
}

void store::invalidate_prefix(std::size_t hint, std::string_view ns, std::string_view prefix,
                              std::int64_t batch, count_fn cb) {
  auto run = std::make_shared<prefix_run>();
  run->redis = &redis_;
  run->hint = hint;
  run->masters = redis_.masters();
  // Keys and prefixes hold no glob character ([A-Za-z0-9._:@-]), nor does the key prefix.
  run->pattern = value_key(ns, prefix);
  run->pattern.pop_back(); // the closing brace
  run->pattern += '*';
  run->batch = std::to_string(batch);
  run->channel = channel_;
  run->message = encode(invalidation{true, std::string(ns), std::string(prefix)});
  run->cb = std::move(cb);
  scan_step(std::move(run), "start");
}

void store::try_lock(std::size_t hint, std::string_view ns, std::string_view key,
                     const std::string& token, std::int64_t lock_ms, lock_fn cb) {
  redis_.command(hint, {"SET", lock_key(ns, key), token, "NX", "PX", std::to_string(lock_ms)},
                 [cb = std::move(cb)](errc e, reply&& r) {
                   if (e != errc::ok || r.is_error())
                     return cb(false, false);
                   cb(true, r.type == reply::kind::status);
                 });
}

void store::unlock(std::size_t hint, std::string_view ns, std::string_view key,
                   const std::string& token) {
  redis_.eval(hint, unlock_script, {lock_key(ns, key)}, {token}, [](errc, reply&&) {});
}

} // namespace sessiond::cache
