// Internal to config/: the key table and the helpers that config.cpp (every section's keys, the
// reader, the environment, the printer), queues.cpp (the job queue's tables) and cache.cpp (the
// cache's namespace tables) share.
#pragma once

#include "config/config.hpp"

#include <toml++/toml.h>

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

// config.cpp defines its helpers in this namespace; only the ones queues.cpp and cache.cpp use are
// declared.
namespace sessiond::config::detail {

using int_field = std::int64_t& (*)(config&);
using bool_field = bool& (*)(config&);
using text_field = std::string& (*)(config&);
using real_field = double& (*)(config&);
using any_field = std::variant<int_field, bool_field, text_field, real_field>;
using text_check = bool (*)(std::string_view);

/// The accessor a table entry stores, e.g. &at<&config::http, &http_section::io_threads>.
template <auto Section, auto Member>
auto& at(config& c) {
  return (c.*Section).*Member;
}

/// One configuration key: everything the reader, the validator and the printer need.
struct key_spec {
  std::string_view name; ///< "section.key" or "queues.defaults.key", exactly as in the TOML file
  any_field field;
  std::int64_t min = 0; ///< integers: inclusive bounds; reals: min < value <= max
  std::int64_t max = 0;
  text_check check = nullptr; ///< strings: nullptr means "one of `allowed`" (", "-separated)
  std::string_view allowed;   ///< strings: what is accepted, as printed in errors
  bool secret = false;        ///< strings: a URL whose password is masked when printed
  std::string_view help;
  /// [queues.defaults] keys: the member every [queues.<name>] has too; nullptr for the others.
  std::int64_t queue_settings::*setting = nullptr;
};

key_spec integer(std::string_view name, int_field f, std::int64_t min, std::int64_t max,
                 std::string_view help);
key_spec boolean(std::string_view name, bool_field f, std::string_view help);
key_spec real(std::string_view name, real_field f, std::int64_t min, std::int64_t max,
              std::string_view help);

/// Every key, grouped by section in file order (to_toml relies on the grouping).
const std::vector<key_spec>& key_table();
/// The entry named `name`, or nullptr.
const key_spec* find_key(std::string_view name);

/// Rules between two integer keys: `key op other` must hold.
struct cross_rule {
  std::string_view key;
  std::string_view op; ///< "<=" or ">="
  std::string_view other;
};
/// Every cross-key rule; the ones between [queues.defaults] keys hold in each named queue too.
const std::vector<cross_rule>& cross_rules();

/// Throws config_error("config: " + line).
[[noreturn]] void fail(const std::string& line);
/// A TOML basic string; escapes control characters, so the result is always one line.
std::string quote(std::string_view s);
/// scheme://user:PASSWORD@host… → scheme://user:****@host…, and `password=` query values.
std::string mask_url(std::string url);
/// The shortest text that reads back as the same double, always a TOML float ("1.0", not "1").
std::string real_literal(double v);

bool starts_with(std::string_view s, std::string_view prefix);
/// Every character is alphanumeric (ASCII) or one of `extra`; true for the empty string.
bool all_of_set(std::string_view s, std::string_view extra);
/// Printable ASCII without spaces.
bool url_chars(std::string_view v);
bool valid_hh_mm(std::string_view v);

/// A TOML value as it is echoed in errors: strings quoted, arrays [...] and tables {...}.
std::string render(const toml::node& node);
[[noreturn]] void wrong_type(std::string_view name, const toml::node& node,
                             std::string_view expected);
/// Sets the key from a TOML value of its type; a wrong type stops loading.
void set_from_toml(config& c, const key_spec& spec, const toml::node& node);

// --- the job queue's part (queues.cpp) -------------------------------------------------------

/// The [queues] and [queues.defaults] keys, appended to key_table.
std::vector<key_spec> queue_keys();

/// A [queues.<name>] table as read: the settings it sets and its handlers. It is laid over the
/// effective defaults only once the environment is applied, so that neither the order of the
/// tables in the file nor SESSIOND_QUEUES_DEFAULTS_* is lost on a named queue.
struct queue_table {
  std::vector<std::pair<std::int64_t queue_settings::*, std::int64_t>> values;
  std::map<std::string, queue_handler> handlers;
};
using queue_tables = std::map<std::string, queue_table>;

/// Reads the [queues] table of the file: its keys and [queues.defaults] into `c`, the schedules
/// into c.queues.schedule, the named queues into `named`. A wrong type or unknown key stops
/// loading.
void read_queues(config& c, const toml::table& queues, const std::string& where,
                 queue_tables& named);
/// c.queues.named[name] = the effective defaults with the table's settings and handlers on top.
void apply_queue_tables(config& c, const queue_tables& named);
/// Checks the named queues, their handlers and the schedules (the key table checks the rest).
void validate_queues(const config& c);
/// The named queues and schedules as TOML, after the key table's sections.
std::string queues_to_toml(const config& c);

// --- the cache's part (cache.cpp) -----------------------------------------------------------

/// The [cache] keys, placed in the key table between [sync] and [metrics].
std::vector<key_spec> cache_keys();

/// A [cache.namespaces.<name>] table as read. A "tenant" table without ttl_s takes
/// cache.tenant_ttl_s, known only once the environment (TENANT_CACHE_TTL) is applied.
struct cache_table {
  cache_namespace settings;
  bool sets_ttl_s = false;
};
using cache_tables = std::map<std::string, cache_table>;

/// Reads the [cache] table of the file: its keys into `c`, the namespace tables into
/// `namespaces`. A wrong type or unknown key stops loading.
void read_cache(config& c, const toml::table& cache, const std::string& where,
                cache_tables& namespaces);
/// c.cache.namespaces[name] = each table, the tenant's TTL filled in.
void apply_cache_tables(config& c, const cache_tables& namespaces);
/// Checks the namespaces: their names, bounds and SQL parameters (the key table checks the rest).
void validate_cache(const config& c);
/// The namespace tables as TOML, every key of each, printed after the [cache] keys.
std::string cache_namespaces_to_toml(const config& c);
/// Key-by-key equality of the namespaces.
bool same_namespaces(const cache_section& a, const cache_section& b);

} // namespace sessiond::config::detail
