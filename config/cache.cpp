// The cache's configuration: the [cache] keys (entries of the key table like any other), and the
// [cache.namespaces.<name>] tables, read from the file only, whose keys one small table declares.
#include "config/config.hpp"
#include "config/key_table.hpp"

#include <toml++/toml.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>
#include <vector>

namespace sessiond::config::detail {
namespace {

using C = config;
using K = cache_section;
using N = cache_namespace;

constexpr std::string_view name_rule = "1-64 characters of [A-Za-z0-9._-]";
constexpr std::size_t max_namespaces = 1000;
constexpr std::string_view tenant = "tenant";

/// One key of a [cache.namespaces.<name>] table. The reader, the validator, the printer and
/// equality walk this table, as config.cpp's walkers walk the key table.
struct namespace_key {
  std::string_view key;
  std::variant<std::int64_t N::*, double N::*, std::string N::*> member;
  double min = 0; ///< numbers: inclusive bounds
  double max = 0;
  text_check check = nullptr; ///< strings: what is accepted, as `allowed` says
  std::string_view allowed;
};

/// Which $n placeholders a statement holds, outside quotes, comments and identifiers (PostgreSQL
/// allows '$' inside an identifier). PostgreSQL decides at start-up whether it prepares; this is
/// the check that can be made without a database.
struct placeholders {
  bool first = false; ///< $1
  bool other = false; ///< $2, $3, …
};

bool identifier_char(char ch) {
  return all_of_set(std::string_view(&ch, 1), "_$");
}

/// The index after the quoted text or comment that starts at `i`, or `i` when none starts there.
std::size_t skip_quoted(std::string_view sql, std::size_t i) {
  std::string_view open = sql.substr(i, 2);
  std::string_view close;
  std::size_t from = i + 2;
  if (open[0] == '\'' || open[0] == '"') { // a doubled quote closes and reopens: same result
    close = open.substr(0, 1);
    from = i + 1;
  } else if (open == "--") {
    close = "\n";
  } else if (open == "/*") {
    close = "*/";
  } else {
    return i;
  }
  auto end = sql.find(close, from);
  return end == std::string_view::npos ? sql.size() : end + close.size();
}

placeholders placeholders_of(std::string_view sql) {
  placeholders found;
  std::size_t i = 0;
  while (i < sql.size()) {
    if (std::size_t after = skip_quoted(sql, i); after != i) {
      i = after;
      continue;
    }
    bool parameter = sql[i] == '$' && (i == 0 || !identifier_char(sql[i - 1]));
    std::size_t digits = i + 1;
    while (parameter && digits < sql.size() && sql[digits] >= '0' && sql[digits] <= '9') {
      ++digits;
    }
    if (parameter && digits > i + 1) {
      bool one = sql.substr(i + 1, digits - i - 1) == "1";
      found.first = found.first || one;
      found.other = found.other || !one;
      i = digits;
    } else {
      ++i;
    }
  }
  return found;
}

bool valid_loader(std::string_view sql) {
  auto p = placeholders_of(sql);
  return sql.empty() || (p.first && !p.other);
}

bool valid_warm(std::string_view sql) {
  auto p = placeholders_of(sql);
  return !p.first && !p.other;
}

template <class T>
namespace_key number(std::string_view key, T N::*member, double min, double max) {
  return {key, member, min, max, nullptr, {}};
}

namespace_key statement(std::string_view key, std::string N::*member, text_check check,
                        std::string_view allowed) {
  return {key, member, 0, 0, check, allowed};
}

const std::vector<namespace_key>& namespace_keys() {
  static const std::vector<namespace_key> keys = {
      number("ttl_s", &N::ttl_s, 1, 31536000),
      number("jitter_ratio", &N::jitter_ratio, 0, 0.5),
      number("negative_ttl_s", &N::negative_ttl_s, 0, 86400),
      number("stale_if_error_s", &N::stale_if_error_s, 0, 86400),
      statement("loader", &N::loader, valid_loader,
                "empty or one SQL statement whose only parameter is $1, the key"),
      statement("warm", &N::warm, valid_warm, "empty or one SQL statement without parameters"),
      number("near_cache_entries", &N::near_cache_entries, 0, 10000000),
      number("near_ttl_ms", &N::near_ttl_ms, 1, 3600000),
      number("early_refresh_beta", &N::early_refresh_beta, 0, 10),
  };
  return keys;
}

bool valid_name(std::string_view v) {
  return !v.empty() && v.size() <= 64 && all_of_set(v, "._-");
}

/// `name` as a TOML key: bare when it can be, else quoted (a bare "a.b" is two tables).
std::string toml_key(std::string_view name) {
  return !name.empty() && all_of_set(name, "_-") ? std::string(name) : quote(name);
}

/// A bound as written in config.hpp: 10, not 10.0.
std::string bound_text(double v) {
  return v == std::floor(v) ? std::to_string(static_cast<std::int64_t>(v)) : real_literal(v);
}

/// The value of one namespace key as a TOML literal (strings quoted).
std::string literal_of(const N& ns, const namespace_key& k) {
  return std::visit(
      [&](auto member) {
        const auto& v = ns.*member;
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::int64_t>) {
          return std::to_string(v);
        } else if constexpr (std::is_same_v<T, double>) {
          return real_literal(v);
        } else {
          return quote(v);
        }
      },
      k.member);
}

/// Sets one namespace key from its TOML value; a wrong type stops loading.
void set_key(N& ns, const namespace_key& k, const std::string& name, const toml::node& node) {
  std::visit(
      [&](auto member) {
        auto& v = ns.*member;
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::int64_t>) {
          if (const auto* i = node.as_integer()) {
            v = i->get();
          } else {
            wrong_type(name, node, "an integer");
          }
        } else if constexpr (std::is_same_v<T, double>) { // `beta = 1` means 1.0, as in [queues]
          if (const auto* f = node.as_floating_point()) {
            v = f->get();
          } else if (const auto* i = node.as_integer()) {
            v = static_cast<double>(i->get());
          } else {
            wrong_type(name, node, "a number");
          }
        } else if (const auto* text = node.as_string()) {
          v = text->get();
        } else {
          wrong_type(name, node, "a string");
        }
      },
      k.member);
}

/// One namespace key against its bounds or its rule.
void check_key(const N& ns, const namespace_key& k, const std::string& name) {
  std::visit(
      [&](auto member) {
        const auto& v = ns.*member;
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::int64_t>) {
          if (v < k.min || v > k.max) {
            fail(name + " = " + std::to_string(v) + " is out of range (allowed: " +
                 bound_text(k.min) + ".." + bound_text(k.max) + ")");
          }
        } else if constexpr (std::is_same_v<T, double>) {
          if (!(v >= k.min && v <= k.max)) { // written so that NaN is refused too
            fail(name + " = " + real_literal(v) + " is out of range (allowed: at least " +
                 bound_text(k.min) + ", at most " + bound_text(k.max) + ")");
          }
        } else if (!k.check(v)) {
          fail(name + " = " + quote(v) + " is invalid (allowed: " + std::string(k.allowed) + ")");
        }
      },
      k.member);
}

const namespace_key* find_namespace_key(std::string_view key) {
  const auto& keys = namespace_keys();
  auto it = std::find_if(keys.begin(), keys.end(),
                         [key](const namespace_key& k) { return k.key == key; });
  return it == keys.end() ? nullptr : &*it;
}

[[noreturn]] void unknown_key(const std::string& name, const std::string& where) {
  fail("unknown key " + quote(name) + " (in " + where + ")");
}

const toml::table& table_of(const std::string& name, const toml::node& node) {
  const auto* t = node.as_table();
  if (t == nullptr) {
    wrong_type(name, node, "a table");
  }
  return *t;
}

cache_table read_namespace(const toml::table& table, const std::string& prefix,
                           const std::string& where) {
  cache_table out;
  for (auto&& [key, node] : table) {
    std::string sub(key.str());
    std::string name = prefix + "." + toml_key(sub);
    const namespace_key* k = find_namespace_key(sub);
    if (k == nullptr) {
      unknown_key(name, where);
    }
    set_key(out.settings, *k, name, node);
    out.sets_ttl_s = out.sets_ttl_s || sub == "ttl_s";
  }
  return out;
}

} // namespace

std::vector<key_spec> cache_keys() {
  return {
      integer("cache.tenant_ttl_s", &at<&C::cache, &K::tenant_ttl_s>, 1, 31536000,
              "how long a tenant record stays cached, in s; also the ttl_s of a "
              "[cache.namespaces.tenant] that sets none"),
      boolean("cache.enabled", &at<&C::cache, &K::enabled>,
              "serve /v1/cache and run the cache's actors; false: /v1/cache answers 404"),
      integer("cache.max_value_bytes", &at<&C::cache, &K::max_value_bytes>, 2, 67108864,
              "largest cached value (a PUT body or a loaded one) as JSON, in bytes"),
      integer("cache.max_ttl_s", &at<&C::cache, &K::max_ttl_s>, 1, 31536000,
              "largest ?ttl_s a PUT may ask for, in s"),
      integer("cache.max_waiters", &at<&C::cache, &K::max_waiters>, 1, 1000000,
              "readers waiting for one key's load at most; past it a reader gets 503"),
      integer("cache.max_loads", &at<&C::cache, &K::max_loads>, 1, 100000,
              "loads running or queued per node at most; past it a miss gets 503"),
      integer("cache.lock_ms", &at<&C::cache, &K::lock_ms>, 100, 600000,
              "life of the cross-node lock a key's load holds, in ms; a load that takes longer "
              "may run on a second node"),
      integer("cache.lock_poll_ms", &at<&C::cache, &K::lock_poll_ms>, 1, 10000,
              "a node that finds a key's load lock taken looks in Redis again this often, in ms"),
      real("cache.max_redis_memory_ratio", &at<&C::cache, &K::max_redis_memory_ratio>, 0, 1,
           "cache writes are skipped (a PUT answers 503) while the cache's Redis uses more than "
           "this share of its maxmemory"),
      integer("cache.invalidate_batch", &at<&C::cache, &K::invalidate_batch>, 10, 100000,
              "keys per SCAN COUNT and per UNLINK of an invalidation"),
      integer("cache.retry_after_s", &at<&C::cache, &K::retry_after_s>, 1, 3600,
              "Retry-After sent with a cache 503, in s"),
  };
}

void read_cache(config& c, const toml::table& cache, const std::string& where,
                cache_tables& namespaces) {
  for (auto&& [key, node] : cache) {
    std::string sub(key.str());
    std::string name = "cache." + toml_key(sub);
    if (const key_spec* spec = find_key("cache." + sub)) {
      set_from_toml(c, *spec, node);
    } else if (sub == "namespaces") {
      for (auto&& [ns, table] : table_of(name, node)) {
        std::string prefix = name + "." + toml_key(ns.str());
        namespaces[std::string(ns.str())] = read_namespace(table_of(prefix, table), prefix, where);
      }
    } else {
      unknown_key(name, where);
    }
  }
}

void apply_cache_tables(config& c, const cache_tables& namespaces) {
  for (const auto& [name, table] : namespaces) {
    cache_namespace ns = table.settings;
    if (name == tenant && !table.sets_ttl_s) { // so that TENANT_CACHE_TTL keeps working
      ns.ttl_s = c.cache.tenant_ttl_s;
    }
    c.cache.namespaces[name] = std::move(ns);
  }
}

void validate_cache(const config& c) {
  const auto& namespaces = c.cache.namespaces;
  if (namespaces.size() > max_namespaces) {
    fail(std::to_string(namespaces.size()) + " [cache.namespaces.<name>] tables are too many " +
         "(allowed: at most " + std::to_string(max_namespaces) + ")");
  }
  for (const auto& [name, ns] : namespaces) {
    std::string prefix = "cache.namespaces." + toml_key(name);
    if (!valid_name(name)) {
      fail(prefix + " has an invalid namespace name (allowed: " + std::string(name_rule) + ")");
    }
    for (const namespace_key& k : namespace_keys()) {
      check_key(ns, k, prefix + "." + std::string(k.key));
    }
  }
}

std::string cache_namespaces_to_toml(const config& c) {
  std::string out;
  for (const auto& [name, ns] : c.cache.namespaces) {
    out += "\n[cache.namespaces." + toml_key(name) + "]\n";
    for (const namespace_key& k : namespace_keys()) {
      out += std::string(k.key) + " = " + literal_of(ns, k) + "\n";
    }
  }
  return out;
}

bool same_namespaces(const cache_section& a, const cache_section& b) {
  const auto& keys = namespace_keys();
  return a.namespaces.size() == b.namespaces.size() &&
         std::equal(a.namespaces.begin(), a.namespaces.end(), b.namespaces.begin(),
                    [&](const auto& x, const auto& y) {
                      return x.first == y.first &&
                             std::all_of(keys.begin(), keys.end(), [&](const namespace_key& k) {
                               return literal_of(x.second, k) == literal_of(y.second, k);
                             });
                    });
}

} // namespace sessiond::config::detail
