// The job queue's configuration: the [queues] and [queues.defaults] keys (entries of the key
// table like any other), and what a flat table cannot hold, read from the file only:
// [queues.<name>] tables with their [queues.<name>.handlers.<type>], and [[queues.schedule]].
#include "config/config.hpp"
#include "config/key_table.hpp"

#include <nlohmann/json.hpp>
#include <toml++/toml.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

namespace sessiond::config {

const queue_settings& queues_section::settings_for(const std::string& name) const {
  auto it = named.find(name);
  return it == named.end() ? defaults : it->second;
}

namespace detail {
namespace {

using C = config;
using Q = queues_section;
using S = queue_settings;
using json = nlohmann::json;

constexpr std::string_view defaults_prefix = "queues.defaults.";
constexpr std::string_view name_rule = "1-64 characters of [A-Za-z0-9._:-]";
constexpr std::string_view queue_name_rule =
    "1-64 characters of [A-Za-z0-9._:-], not defaults, schedule or a [queues] key";
constexpr std::string_view handlers_refused =
    "queues.defaults.handlers is refused (handlers belong to one queue: "
    "[queues.<name>.handlers.<type>])";
constexpr std::int64_t max_every_s = 31536000;
constexpr std::int64_t max_priority = 1000;
constexpr std::int64_t min_timeout_ms = 100;
constexpr std::int64_t max_timeout_ms = 600000;
/// As model::max_json_depth: dumping and copying JSON recurse once per level.
constexpr std::size_t max_payload_depth = 128;

template <std::int64_t queue_settings::*Member>
std::int64_t& in_defaults(config& c) {
  return c.queues.defaults.*Member;
}

/// A [queues.defaults] key: its value lives in c.queues.defaults, and each named queue has the
/// same member, with the same bounds.
template <std::int64_t queue_settings::*Member>
key_spec setting(std::string_view name, std::int64_t min, std::int64_t max, std::string_view help) {
  key_spec spec = integer(name, &in_defaults<Member>, min, max, help);
  spec.setting = Member;
  return spec;
}

/// "lease_ms" of "queues.defaults.lease_ms".
std::string key_of(const key_spec& spec) {
  return std::string(spec.name.substr(defaults_prefix.size()));
}

const key_spec* find_setting(std::string_view key) {
  const key_spec* spec = find_key(std::string(defaults_prefix) + std::string(key));
  return spec != nullptr && spec->setting != nullptr ? spec : nullptr;
}

/// Queue names, job types and schedule names.
bool valid_name(std::string_view v) {
  return !v.empty() && v.size() <= 64 && all_of_set(v, "._:-");
}

bool valid_queue_name(const std::string& v) { // the others would collide with [queues] itself
  return valid_name(v) && v != "defaults" && v != "schedule" && find_key("queues." + v) == nullptr;
}

bool valid_webhook_url(std::string_view v) {
  return ((starts_with(v, "http://") && v.size() > 7) ||
          (starts_with(v, "https://") && v.size() > 8)) &&
         url_chars(v);
}

/// `name` as a TOML key: bare when it can be, else quoted (a bare "mail.v2" is two tables).
std::string toml_key(std::string_view name) {
  return !name.empty() && all_of_set(name, "_-") ? std::string(name) : quote(name);
}

/// A TOML literal string when `s` allows one (JSON reads better without escaped quotes).
std::string toml_text(std::string_view s) {
  bool literal = std::all_of(s.begin(), s.end(), [](char ch) { return ch >= ' ' && ch < 0x7f; }) &&
                 s.find('\'') == std::string_view::npos;
  return literal ? "'" + std::string(s) + "'" : quote(s);
}

void check_range(const std::string& name, std::int64_t v, std::int64_t min, std::int64_t max) {
  if (v < min || v > max) {
    fail(name + " = " + std::to_string(v) + " is out of range (allowed: " + std::to_string(min) +
         ".." + std::to_string(max) + ")");
  }
}

void check_at(const std::string& name, const std::string& at) {
  if (!valid_hh_mm(at)) {
    fail(name + " = " + quote(at) + " is invalid (allowed: HH:MM from 00:00 to 23:59)");
  }
}

// --- JSON payloads ---------------------------------------------------------------------------

/// The deepest nesting of arrays and objects in JSON text, string contents skipped.
std::size_t json_depth(std::string_view text) {
  std::size_t depth = 0;
  std::size_t deepest = 0;
  bool in_string = false;
  bool escaped = false;
  for (char ch : text) {
    if (escaped) {
      escaped = false;
    } else if (in_string) {
      escaped = ch == '\\';
      in_string = ch != '"';
    } else if (ch == '"') {
      in_string = true;
    } else if (ch == '[' || ch == '{') {
      deepest = std::max(deepest, ++depth);
    } else if ((ch == ']' || ch == '}') && depth > 0) {
      --depth;
    }
  }
  return deepest;
}

/// `text` parsed, when it is a JSON object nested at most max_payload_depth deep.
std::optional<json> json_object(std::string_view text) {
  if (json_depth(text) > max_payload_depth) { // on the text: a deep tree recurses when walked
    return std::nullopt;
  }
  json j = json::parse(text, nullptr, false);
  return !j.is_discarded() && j.is_object() ? std::optional<json>(std::move(j)) : std::nullopt;
}

std::string payload_rule() {
  return "a JSON object nested at most " + std::to_string(max_payload_depth) + " deep";
}

/// Compact JSON, non-ASCII escaped: the configuration is ASCII (config.cpp refuses the rest).
std::string compact(const json& j, const std::string& name) {
  try {
    return j.dump(-1, ' ', true);
  } catch (const json::exception&) { // invalid UTF-8, which toml++ should never hand over
    fail(name + " is invalid (allowed: " + payload_rule() + " of UTF-8 text)");
  }
}

/// A TOML value as JSON; dates and times have no JSON form and are refused.
json to_json(const toml::node& node, const std::string& name) {
  if (const auto* t = node.as_table()) {
    json j = json::object();
    for (auto&& [key, value] : *t) {
      j[std::string(key.str())] = to_json(value, name + "." + toml_key(key.str()));
    }
    return j;
  }
  if (const auto* a = node.as_array()) {
    json j = json::array();
    for (std::size_t i = 0; i < a->size(); ++i) {
      j.push_back(to_json((*a)[i], name + "[" + std::to_string(i) + "]"));
    }
    return j;
  }
  if (const auto* f = node.as_floating_point()) {
    if (!std::isfinite(f->get())) {
      fail(name + " = " + render(node) + " is invalid (allowed: a finite number)");
    }
    return f->get();
  }
  if (const auto* s = node.as_string()) {
    return s->get();
  }
  if (const auto* i = node.as_integer()) {
    return i->get();
  }
  if (const auto* b = node.as_boolean()) {
    return b->get();
  }
  wrong_type(name, node, "a string, integer, float, boolean, array or table");
}

/// payload: a table becomes compact JSON; a string must already hold a JSON object.
std::string read_payload(const std::string& name, const toml::node& node) {
  if (const auto* t = node.as_table()) {
    return compact(to_json(*t, name), name);
  }
  const auto* text = node.as_string();
  if (text == nullptr) {
    wrong_type(name, node, "a table or a string holding a JSON object");
  }
  auto j = json_object(text->get());
  if (!j) {
    fail(name + " = " + quote(text->get()) + " is invalid (allowed: " + payload_rule() + ")");
  }
  return compact(*j, name);
}

// --- reading the file ------------------------------------------------------------------------

[[noreturn]] void unknown_key(const std::string& name, const std::string& where) {
  fail("unknown key " + quote(name) + " (in " + where + ")");
}

std::int64_t integer_of(const std::string& name, const toml::node& node) {
  const auto* v = node.as_integer();
  if (v == nullptr) {
    wrong_type(name, node, "an integer");
  }
  return v->get();
}

std::string string_of(const std::string& name, const toml::node& node) {
  const auto* v = node.as_string();
  if (v == nullptr) {
    wrong_type(name, node, "a string");
  }
  return v->get();
}

const toml::table& table_of(const std::string& name, const toml::node& node) {
  const auto* t = node.as_table();
  if (t == nullptr) {
    wrong_type(name, node, "a table");
  }
  return *t;
}

queue_handler read_handler(const toml::table& table, const std::string& prefix,
                           const std::string& where) {
  queue_handler h;
  for (auto&& [key, node] : table) {
    std::string sub(key.str());
    std::string name = prefix + "." + toml_key(sub);
    if (sub == "kind") {
      h.kind = string_of(name, node);
    } else if (sub == "url") {
      h.url = string_of(name, node);
    } else if (sub == "timeout_ms") {
      h.timeout_ms = integer_of(name, node);
    } else {
      unknown_key(name, where);
    }
  }
  return h;
}

/// [queues.<name>] (named) or [queues.defaults]: settings keys, and handlers in a named queue.
queue_table read_settings(const toml::table& table, const std::string& prefix,
                          const std::string& where, bool named) {
  queue_table out;
  for (auto&& [key, node] : table) {
    std::string sub(key.str());
    std::string name = prefix + "." + toml_key(sub);
    if (sub == "handlers") {
      if (!named) {
        fail(std::string(handlers_refused));
      }
      for (auto&& [type, handler] : table_of(name, node)) {
        std::string handler_name = name + "." + toml_key(type.str());
        out.handlers[std::string(type.str())] =
            read_handler(table_of(handler_name, handler), handler_name, where);
      }
    } else if (const key_spec* spec = find_setting(sub)) {
      out.values.emplace_back(spec->setting, integer_of(name, node));
    } else {
      unknown_key(name, where);
    }
  }
  return out;
}

queue_schedule read_schedule(const toml::table& table, const std::string& prefix,
                             const std::string& where) {
  queue_schedule s;
  for (auto&& [key, node] : table) {
    std::string sub(key.str());
    std::string name = prefix + "." + toml_key(sub);
    // 0 and "" are how the struct says "not set": an explicit one is refused here, where it shows.
    if (sub == "name") {
      s.name = string_of(name, node);
    } else if (sub == "queue") {
      s.queue = string_of(name, node);
    } else if (sub == "type") {
      s.type = string_of(name, node);
    } else if (sub == "payload") {
      s.payload = read_payload(name, node);
    } else if (sub == "every_s") {
      s.every_s = integer_of(name, node);
      if (s.every_s == 0) {
        check_range(name, 0, 1, max_every_s);
      }
    } else if (sub == "at") {
      s.at = string_of(name, node);
      if (s.at.empty()) {
        check_at(name, s.at);
      }
    } else if (sub == "priority") {
      s.priority = integer_of(name, node);
    } else {
      unknown_key(name, where);
    }
  }
  return s;
}

void read_schedules(config& c, const toml::node& node, const std::string& where) {
  const auto* array = node.as_array();
  if (array == nullptr) {
    wrong_type("queues.schedule", node, "an array of tables, [[queues.schedule]]");
  }
  for (std::size_t i = 0; i < array->size(); ++i) {
    std::string name = "queues.schedule[" + std::to_string(i) + "]";
    c.queues.schedule.push_back(read_schedule(table_of(name, (*array)[i]), name, where));
  }
}

void apply_values(queue_settings& s, const queue_table& table) {
  for (const auto& [member, value] : table.values) {
    s.*member = value;
  }
}

// --- validation ------------------------------------------------------------------------------

void check_name(const std::string& name, const std::string& v) {
  if (v.empty()) {
    fail(name + " is missing (allowed: " + std::string(name_rule) + ")");
  }
  if (!valid_name(v)) {
    fail(name + " = " + quote(v) + " is invalid (allowed: " + std::string(name_rule) + ")");
  }
}

/// A named queue's settings: the bounds and cross-key rules of [queues.defaults], by its name.
void check_settings(const std::string& prefix, const queue_settings& s) {
  for (const key_spec& spec : key_table()) {
    if (spec.setting != nullptr) {
      check_range(prefix + "." + key_of(spec), s.*spec.setting, spec.min, spec.max);
    }
  }
  for (const cross_rule& rule : cross_rules()) {
    const key_spec* key = find_key(rule.key);
    const key_spec* other = find_key(rule.other);
    if (key->setting == nullptr || other->setting == nullptr) {
      continue;
    }
    std::int64_t v = s.*key->setting;
    std::int64_t bound = s.*other->setting;
    if (rule.op == "<=" ? v > bound : v < bound) {
      fail(prefix + "." + key_of(*key) + " = " + std::to_string(v) +
           " is out of range (allowed: " + std::string(rule.op) + " " + prefix + "." +
           key_of(*other) + " = " + std::to_string(bound) + ")");
    }
  }
}

void check_handler(const std::string& name, const queue_handler& h) {
  if (h.kind != "webhook" && h.kind != "noop" && h.kind != "pull") {
    fail(name + ".kind = " + quote(h.kind) + " is invalid (allowed: webhook, noop, pull)");
  }
  if (h.kind == "webhook" && h.url.empty()) {
    fail(name + ".url is missing (allowed: an http:// or https:// URL, required with kind = " +
         "\"webhook\")");
  }
  if (h.kind != "webhook" && !h.url.empty()) {
    fail(name + ".url is set but kind = " + quote(h.kind) +
         " (allowed: a url only with kind = \"webhook\")");
  }
  if (!h.url.empty() && !valid_webhook_url(h.url)) {
    fail(name + ".url = " + quote(mask_url(h.url)) +
         " is invalid (allowed: an http:// or https:// URL without spaces)");
  }
  check_range(name + ".timeout_ms", h.timeout_ms, min_timeout_ms, max_timeout_ms);
}

void check_named(const queues_section& q) {
  if (static_cast<std::int64_t>(q.named.size()) > q.max_queues) {
    fail(std::to_string(q.named.size()) + " [queues.<name>] tables are too many (allowed: at " +
         "most queues.max_queues = " + std::to_string(q.max_queues) + ")");
  }
  for (const auto& [name, s] : q.named) {
    std::string prefix = "queues." + toml_key(name);
    if (!valid_queue_name(name)) {
      fail(prefix + " has an invalid queue name (allowed: " + std::string(queue_name_rule) + ")");
    }
    check_settings(prefix, s);
    for (const auto& [type, h] : s.handlers) {
      std::string handler = prefix + ".handlers." + toml_key(type);
      if (!valid_name(type)) {
        fail(handler + " has an invalid job type (allowed: " + std::string(name_rule) + ")");
      }
      check_handler(handler, h);
    }
  }
}

void check_period(const std::string& prefix, const queue_schedule& s) {
  if (s.every_s != 0 && !s.at.empty()) {
    fail(prefix + " sets both every_s and at (allowed: exactly one of them)");
  }
  if (s.every_s == 0 && s.at.empty()) {
    fail(prefix + " sets neither every_s nor at (allowed: exactly one of them)");
  }
  if (s.every_s != 0) {
    check_range(prefix + ".every_s", s.every_s, 1, max_every_s);
  }
  if (!s.at.empty()) {
    check_at(prefix + ".at", s.at);
  }
}

void check_payload(const std::string& name, const std::string& payload, std::int64_t max_bytes) {
  if (!json_object(payload)) {
    fail(name + " = " + quote(payload) + " is invalid (allowed: " + payload_rule() + ")");
  }
  if (static_cast<std::int64_t>(payload.size()) > max_bytes) {
    fail(name + " is " + std::to_string(payload.size()) + " bytes (allowed: at most " +
         "queues.max_payload_bytes = " + std::to_string(max_bytes) + ")");
  }
}

void check_schedules(const queues_section& q) {
  std::map<std::string, std::string> seen; // name → the schedule that has it
  for (std::size_t i = 0; i < q.schedule.size(); ++i) {
    const queue_schedule& s = q.schedule[i];
    std::string prefix = "queues.schedule[" + std::to_string(i) + "]";
    check_name(prefix + ".name", s.name);
    if (auto [it, fresh] = seen.emplace(s.name, prefix); !fresh) {
      fail(prefix + ".name = " + quote(s.name) + " is already used by " + it->second +
           " (allowed: a name no other schedule has)");
    }
    check_name(prefix + ".queue", s.queue);
    check_name(prefix + ".type", s.type);
    check_period(prefix, s);
    check_range(prefix + ".priority", s.priority, -max_priority, max_priority);
    check_payload(prefix + ".payload", s.payload, q.max_payload_bytes);
  }
}

// --- printing --------------------------------------------------------------------------------

std::string settings_toml(const std::string& table, const queue_settings& s) {
  std::string out = "\n[" + table + "]\n";
  for (const key_spec& spec : key_table()) {
    if (spec.setting != nullptr) {
      out += key_of(spec) + " = " + std::to_string(s.*spec.setting) + "\n";
    }
  }
  for (const auto& [type, h] : s.handlers) {
    out += "\n[" + table + ".handlers." + toml_key(type) + "]\nkind = " + quote(h.kind) + "\n";
    if (!h.url.empty()) {
      out += "url = " + quote(mask_url(h.url)) + "\n";
    }
    out += "timeout_ms = " + std::to_string(h.timeout_ms) + "\n";
  }
  return out;
}

std::string schedule_toml(const queue_schedule& s) {
  std::string out = "\n[[queues.schedule]]\nname = " + quote(s.name) +
                    "\nqueue = " + quote(s.queue) + "\ntype = " + quote(s.type) +
                    "\npayload = " + toml_text(s.payload) + "\n";
  if (s.every_s != 0) {
    out += "every_s = " + std::to_string(s.every_s) + "\n";
  }
  if (!s.at.empty()) {
    out += "at = " + quote(s.at) + "\n";
  }
  return out + "priority = " + std::to_string(s.priority) + "\n";
}

} // namespace

std::vector<key_spec> queue_keys() {
  return {
      boolean("queues.require_noeviction", &at<&C::queues, &Q::require_noeviction>,
              "refuse to start when the queue's Redis may evict keys (a maxmemory-policy other "
              "than noeviction), since an evicted job is lost without a trace"),
      real("queues.max_redis_memory_ratio", &at<&C::queues, &Q::max_redis_memory_ratio>, 0, 1,
           "an enqueue answers 503 while the queue's Redis uses more than this share of its "
           "maxmemory"),
      integer("queues.shutdown_grace_ms", &at<&C::queues, &Q::shutdown_grace_ms>, 0, 600000,
              "on SIGTERM, how long jobs the built-in workers are running may still finish, in ms"),
      integer("queues.maintenance_interval_ms", &at<&C::queues, &Q::maintenance_interval_ms>, 10,
              60000, "how often stalled jobs are reaped and due delayed jobs promoted, in ms"),
      integer("queues.lease_poll_ms", &at<&C::queues, &Q::lease_poll_ms>, 5, 10000,
              "a parked long-poll lease request looks for jobs again this often, in ms"),
      integer("queues.max_waiters", &at<&C::queues, &Q::max_waiters>, 1, 1000000,
              "long-poll lease requests parked per node at most"),
      integer("queues.max_in_flight", &at<&C::queues, &Q::max_in_flight>, 1, 1000000,
              "queue requests in flight per node; beyond it the node answers 503 at once"),
      integer("queues.retry_after_s", &at<&C::queues, &Q::retry_after_s>, 1, 3600,
              "Retry-After sent with a queue's 429 or 503, in s"),
      integer("queues.max_queues", &at<&C::queues, &Q::max_queues>, 1, 100000,
              "queues that may exist, configured or created by a first enqueue"),
      integer("queues.max_payload_bytes", &at<&C::queues, &Q::max_payload_bytes>, 2, 67108864,
              "largest serialized job payload (and result), in bytes"),

      setting<&S::concurrency>("queues.defaults.concurrency", 0, 10000,
                               "built-in worker slots per node and queue (used only when a "
                               "handler is webhook or noop)"),
      setting<&S::lease_ms>("queues.defaults.lease_ms", 1000, 3600000,
                            "a leased job not completed, failed or extended within this long "
                            "counts as stalled, in ms"),
      setting<&S::max_attempts>("queues.defaults.max_attempts", 1, 1000,
                                "runs of a job at most, the first included"),
      setting<&S::backoff_ms>("queues.defaults.backoff_ms", 1, 86400000,
                              "cap of the first retry's delay, doubled per attempt; the delay is "
                              "drawn from 0 up to the cap (full jitter), in ms"),
      setting<&S::max_backoff_ms>("queues.defaults.max_backoff_ms", 1, 604800000,
                                  "cap of any retry's delay, in ms"),
      setting<&S::max_stalled>("queues.defaults.max_stalled", 1, 1000,
                               "a job whose lease expired this many times fails for good"),
      setting<&S::max_length>("queues.defaults.max_length", 1, 100000000,
                              "unfinished jobs (waiting, delayed, active) at most; an enqueue "
                              "past it answers 429"),
      setting<&S::keep_completed>("queues.defaults.keep_completed", 0, 10000000,
                                  "completed jobs kept, the newest"),
      setting<&S::keep_failed>("queues.defaults.keep_failed", 0, 10000000,
                               "failed jobs kept, the newest"),
      setting<&S::keep_age_s>("queues.defaults.keep_age_s", 1, 31536000,
                              "finished jobs older than this are removed, in s"),
      setting<&S::max_wait_s>("queues.defaults.max_wait_s", 1, 31536000,
                              "an oldest waiting job older than this raises an alert, in s"),
      setting<&S::circuit_failures>("queues.defaults.circuit_failures", 1, 1000,
                                    "handler failures in a row that open a job type's circuit"),
      setting<&S::circuit_cooldown_ms>("queues.defaults.circuit_cooldown_ms", 100, 3600000,
                                       "an open circuit waits this long before one probe job, "
                                       "in ms"),
  };
}

void read_queues(config& c, const toml::table& queues, const std::string& where,
                 queue_tables& named) {
  for (auto&& [key, node] : queues) {
    std::string sub(key.str());
    std::string name = "queues." + toml_key(sub);
    const key_spec* spec = find_key("queues." + sub); // a quoted "defaults.x" is not a key here
    if (spec != nullptr && spec->setting == nullptr) {
      set_from_toml(c, *spec, node);
    } else if (sub == "defaults") {
      apply_values(c.queues.defaults, read_settings(table_of(name, node), name, where, false));
    } else if (sub == "schedule") {
      read_schedules(c, node, where);
    } else if (node.is_table()) {
      named[sub] = read_settings(*node.as_table(), name, where, true);
    } else {
      unknown_key(name, where);
    }
  }
}

void apply_queue_tables(config& c, const queue_tables& named) {
  for (const auto& [name, table] : named) {
    queue_settings s = c.queues.defaults;
    apply_values(s, table);
    s.handlers = table.handlers;
    c.queues.named[name] = std::move(s);
  }
}

void validate_queues(const config& c) {
  if (!c.queues.defaults.handlers.empty()) {
    fail(std::string(handlers_refused));
  }
  check_named(c.queues);
  check_schedules(c.queues);
}

std::string queues_to_toml(const config& c) {
  std::string out;
  for (const auto& [name, s] : c.queues.named) {
    out += settings_toml("queues." + toml_key(name), s);
  }
  for (const queue_schedule& s : c.queues.schedule) {
    out += schedule_toml(s);
  }
  return out;
}

} // namespace detail

bool operator==(const queue_handler& a, const queue_handler& b) {
  return std::tie(a.kind, a.url, a.timeout_ms) == std::tie(b.kind, b.url, b.timeout_ms);
}

bool operator==(const queue_settings& a, const queue_settings& b) {
  const auto& table = detail::key_table();
  return a.handlers == b.handlers &&
         std::all_of(table.begin(), table.end(), [&](const detail::key_spec& spec) {
           return spec.setting == nullptr || a.*spec.setting == b.*spec.setting;
         });
}

bool operator==(const queue_schedule& a, const queue_schedule& b) {
  return std::tie(a.name, a.queue, a.type, a.payload, a.every_s, a.at, a.priority) ==
         std::tie(b.name, b.queue, b.type, b.payload, b.every_s, b.at, b.priority);
}

} // namespace sessiond::config
