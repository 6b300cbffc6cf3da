// Unit tests of the job queue's configuration (config/queues.cpp and the real-number key kind):
// defaults, inheritance of [queues.defaults], handlers, schedules, every error with its exact
// line, the environment, to_toml (round trip, masking) and settings_for.
#include "config/config.hpp"

#include <catch2/catch.hpp>

#include <fstream>
#include <sstream>
#include <string>

namespace cfg = sessiond::config;
using Catch::Matchers::Contains;

namespace {

/// The repository root, from this file's own path (the test may run from any directory).
std::string source_root() {
  std::string file = __FILE__;
  return file.substr(0, file.rfind("tests/unit/test_config_queues.cpp"));
}

/// The message load_string throws, or "" when it loads.
std::string error_of(const std::string& text, const cfg::env_map& env = {}) {
  try {
    cfg::load_string(text, env);
  } catch (const cfg::config_error& e) {
    return e.what();
  }
  return "";
}

cfg::config load(const std::string& text, const cfg::env_map& env = {}) {
  return cfg::load_string(text, env);
}

/// A [[queues.schedule]] with every required key, then `extra` lines.
std::string schedule(const std::string& extra, const std::string& name = "nightly") {
  return "[[queues.schedule]]\nname = \"" + name + "\"\nqueue = \"mail\"\ntype = \"send\"\n" +
         extra + "\n";
}

/// Two named queues (one needing quotes), handlers of every kind and two schedules, with values
/// other than the defaults, a password in a webhook URL and payloads of every JSON type.
const std::string queues_example = R"(
[queues]
max_payload_bytes = 4096
[queues.defaults]
max_attempts = 7
backoff_ms = 500
[queues.mail]
lease_ms = 60000
concurrency = 4
[queues.mail.handlers.send]
kind = "webhook"
url = "https://hook:s3cret@notifier.internal/send?x=1"
timeout_ms = 2500
[queues.mail.handlers.bounce]
kind = "noop"
[queues.mail.handlers."user:welcome"]
[queues."reports.v2"]
max_backoff_ms = 500
keep_failed = 0
[[queues.schedule]]
name = "close-inactive-tickets-hourly"
queue = "legacy"
type = "close_inactive_tickets"
every_s = 3600
payload = { inactive_days = 14, tags = ["a", 'b"c'], ratio = 0.25, dry = false, deep = { x = -1 } }
[[queues.schedule]]
name = "archive:nightly"
queue = "reports.v2"
type = "archive_old_interactions"
at = "03:00"
payload = "{\"older_than_days\": 90, \"note\": \"it's\"}"
priority = -10
)";

} // namespace

// --- defaults -----------------------------------------------------------------------------

TEST_CASE("the queue settings default to the values the queue code was designed with") {
  const cfg::config c = load("");
  const cfg::queues_section& q = c.queues;
  CHECK(c.redis.queue_url.empty());
  CHECK_FALSE(q.require_noeviction);
  CHECK(q.max_redis_memory_ratio == 0.9);
  CHECK(q.shutdown_grace_ms == 10000);
  CHECK(q.maintenance_interval_ms == 250);
  CHECK(q.lease_poll_ms == 50);
  CHECK(q.max_waiters == 1000);
  CHECK(q.max_in_flight == 4096);
  CHECK(q.retry_after_s == 1);
  CHECK(q.max_queues == 1000);
  CHECK(q.max_payload_bytes == 65536);
  const cfg::queue_settings& d = q.defaults;
  CHECK(d.concurrency == 10);
  CHECK(d.lease_ms == 30000);
  CHECK(d.max_attempts == 3);
  CHECK(d.backoff_ms == 1000);
  CHECK(d.max_backoff_ms == 3600000);
  CHECK(d.max_stalled == 3);
  CHECK(d.max_length == 100000);
  CHECK(d.keep_completed == 1000);
  CHECK(d.keep_failed == 10000);
  CHECK(d.keep_age_s == 86400);
  CHECK(d.max_wait_s == 300);
  CHECK(d.circuit_failures == 5);
  CHECK(d.circuit_cooldown_ms == 30000);
  CHECK(d.handlers.empty());
  CHECK(q.named.empty());
  CHECK(q.schedule.empty());
  CHECK(cfg::queue_handler{}.kind == "pull");
  CHECK(cfg::queue_handler{}.timeout_ms == 10000);
  CHECK(cfg::queue_schedule{}.payload == "{}");
}

TEST_CASE("the commented queue example at the end of config/sessiond.toml loads when uncommented") {
  std::ifstream in(source_root() + "config/sessiond.toml");
  REQUIRE(in.good());
  std::string text;
  std::string line;
  bool in_example = false;
  while (std::getline(in, line)) {
    in_example = in_example || line == "# [queues.legacy]";
    if (in_example) {
      line = line == "#" ? "" : line.substr(line.rfind("# ", 0) == 0 ? 2 : 0);
    }
    text += line + "\n";
  }
  REQUIRE(in_example);
  cfg::config c = load(text);
  const cfg::queue_settings& legacy = c.queues.settings_for("legacy");
  CHECK(legacy.max_attempts == 5);
  CHECK(legacy.handlers.at("send_notifications").kind == "webhook");
  CHECK(legacy.handlers.at("close_inactive_tickets").kind == "pull");
  CHECK(legacy.handlers.at("archive_old_interactions").kind == "webhook");
  REQUIRE(c.queues.schedule.size() == 2);
  CHECK(c.queues.schedule[0].every_s == 3600);
  CHECK(c.queues.schedule[0].payload == R"({"inactive_days":14})");
  CHECK(c.queues.schedule[1].at == "03:00");
  CHECK(c.queues.schedule[1].payload == R"({"older_than_days":90})");
}

// --- named queues -------------------------------------------------------------------------

TEST_CASE("a named queue inherits [queues.defaults] whatever the file order") {
  const std::string defaults = "[queues.defaults]\nmax_attempts = 9\nlease_ms = 2000\n";
  const std::string mail = "[queues.mail]\nlease_ms = 5000\n";
  cfg::config before = load(mail + defaults);
  cfg::config after = load(defaults + mail);
  CHECK(before == after);
  const cfg::queue_settings& s = before.queues.named.at("mail");
  CHECK(s.max_attempts == 9);
  CHECK(s.lease_ms == 5000);
  CHECK(s.keep_failed == 10000);
  CHECK(before.queues.defaults.lease_ms == 2000);
}

TEST_CASE("a named queue inherits a default set through SESSIOND_QUEUES_DEFAULTS_") {
  cfg::config c = load("[queues.mail]\nlease_ms = 5000\n[queues.defaults]\nmax_attempts = 9\n",
                       {{"SESSIOND_QUEUES_DEFAULTS_MAX_ATTEMPTS", "11"},
                        {"SESSIOND_QUEUES_DEFAULTS_LEASE_MS", "7000"}});
  CHECK(c.queues.defaults.max_attempts == 11);
  CHECK(c.queues.named.at("mail").max_attempts == 11);
  CHECK(c.queues.named.at("mail").lease_ms == 5000); // its own key beats the inherited one
}

TEST_CASE("an empty [queues.<name>] table configures the queue with the defaults") {
  cfg::config c = load("[queues.mail]\n");
  REQUIRE(c.queues.named.count("mail") == 1);
  CHECK(c.queues.named.at("mail") == c.queues.defaults);
}

TEST_CASE("settings_for gives a named queue's settings, and the defaults for any other queue") {
  cfg::config c = load("[queues.mail]\nmax_attempts = 8\n");
  CHECK(c.queues.settings_for("mail").max_attempts == 8);
  CHECK(&c.queues.settings_for("mail") == &c.queues.named.at("mail"));
  CHECK(&c.queues.settings_for("other") == &c.queues.defaults);
  CHECK(c.queues.settings_for("other").max_attempts == 3);
}

TEST_CASE("a queue name with a dot or a colon is written quoted and kept whole") {
  cfg::config c = load("[queues.\"mail.v2\"]\nmax_attempts = 4\n[queues.\"a:b\"]\n");
  CHECK(c.queues.named.at("mail.v2").max_attempts == 4);
  CHECK(c.queues.named.count("a:b") == 1);
  CHECK(error_of("[queues.mail.v2]\nmax_attempts = 4\n") ==
        R"(config: unknown key "queues.mail.v2" (in TOML text))");
}

TEST_CASE("a handler table sets kind, url and timeout_ms, and a bare one is pull") {
  cfg::config c = load(queues_example);
  const auto& handlers = c.queues.named.at("mail").handlers;
  REQUIRE(handlers.size() == 3);
  CHECK(handlers.at("send").kind == "webhook");
  CHECK(handlers.at("send").url == "https://hook:s3cret@notifier.internal/send?x=1");
  CHECK(handlers.at("send").timeout_ms == 2500);
  CHECK(handlers.at("bounce").kind == "noop");
  CHECK(handlers.at("user:welcome").kind == "pull");
  CHECK(handlers.at("user:welcome").url.empty());
  CHECK(c.queues.named.at("reports.v2").handlers.empty());
}

// --- errors of named queues and handlers --------------------------------------------------

TEST_CASE("an unknown key anywhere under [queues] is refused with its full name") {
  CHECK(error_of("[queues]\nmax_waiter = 5") ==
        R"(config: unknown key "queues.max_waiter" (in TOML text))");
  CHECK(error_of("[queues.defaults]\nlease = 5") ==
        R"(config: unknown key "queues.defaults.lease" (in TOML text))");
  CHECK(error_of("[queues.mail]\nlease = 5") ==
        R"(config: unknown key "queues.mail.lease" (in TOML text))");
  CHECK(error_of("[queues.mail.handlers.send]\nretries = 2") ==
        R"(config: unknown key "queues.mail.handlers.send.retries" (in TOML text))");
  CHECK(error_of(schedule("every_s = 60\ncron = \"* * * * *\"")) ==
        R"(config: unknown key "queues.schedule[0].cron" (in TOML text))");
  CHECK(error_of("[queues]\n\"defaults.lease_ms\" = 5") ==
        R"(config: unknown key "queues.\"defaults.lease_ms\"" (in TOML text))");
}

TEST_CASE("a value of the wrong type under [queues] is refused naming the type expected") {
  CHECK(error_of("[queues]\nrequire_noeviction = 1") ==
        "config: queues.require_noeviction = 1 has the wrong type (expected a boolean)");
  CHECK(error_of("[queues]\ndefaults = 5") ==
        "config: queues.defaults = 5 has the wrong type (expected a table)");
  CHECK(error_of("[queues.mail]\nlease_ms = \"5s\"") ==
        R"(config: queues.mail.lease_ms = "5s" has the wrong type (expected an integer))");
  CHECK(error_of("[queues.defaults]\nlease_ms = 2.5") ==
        "config: queues.defaults.lease_ms = 2.5 has the wrong type (expected an integer)");
  CHECK(error_of("[queues.mail]\nhandlers = 5") ==
        "config: queues.mail.handlers = 5 has the wrong type (expected a table)");
  CHECK(error_of("[queues.mail.handlers]\nsend = \"webhook\"") ==
        R"(config: queues.mail.handlers.send = "webhook" has the wrong type (expected a table))");
  CHECK(error_of("[queues.mail.handlers.send]\nkind = 1") ==
        "config: queues.mail.handlers.send.kind = 1 has the wrong type (expected a string)");
  CHECK(error_of("[queues.mail.handlers.send]\ntimeout_ms = \"1s\"") ==
        R"(config: queues.mail.handlers.send.timeout_ms = "1s" has the wrong type )"
        "(expected an integer)");
  CHECK(error_of("[queues]\nmail = 5") == R"(config: unknown key "queues.mail" (in TOML text))");
}

TEST_CASE("a queue name or job type outside [A-Za-z0-9._:-]{1,64} is refused") {
  CHECK(error_of("[queues.\"a b\"]\n") ==
        R"(config: queues."a b" has an invalid queue name (allowed: 1-64 characters of )"
        "[A-Za-z0-9._:-], not defaults, schedule or a [queues] key)");
  CHECK(error_of("[queues." + std::string(65, 'q') + "]\n") ==
        "config: queues." + std::string(65, 'q') +
            " has an invalid queue name (allowed: 1-64 characters of [A-Za-z0-9._:-], not "
            "defaults, schedule or a [queues] key)");
  CHECK(error_of("[queues.\"\"]\n") ==
        R"(config: queues."" has an invalid queue name (allowed: 1-64 characters of )"
        "[A-Za-z0-9._:-], not defaults, schedule or a [queues] key)");
  CHECK(error_of("[queues.mail.handlers.\"send/now\"]\n") ==
        R"(config: queues.mail.handlers."send/now" has an invalid job type )"
        "(allowed: 1-64 characters of [A-Za-z0-9._:-])");
  CHECK(error_of("[queues." + std::string(64, 'q') + ".handlers." + std::string(64, 't') + "]\n") ==
        "");
}

TEST_CASE("validate refuses a named queue that would print over [queues] itself") {
  for (const char* name : {"defaults", "schedule", "max_waiters"}) {
    CAPTURE(name);
    cfg::config c;
    c.queues.named[name] = c.queues.defaults;
    CHECK_THROWS_WITH(cfg::validate(c), std::string("config: queues.") + name +
                                            " has an invalid queue name (allowed: 1-64 characters "
                                            "of [A-Za-z0-9._:-], not defaults, schedule or a "
                                            "[queues] key)");
  }
}

TEST_CASE("a named queue's settings have the bounds of [queues.defaults]") {
  CHECK(error_of("[queues.mail]\nlease_ms = 999") ==
        "config: queues.mail.lease_ms = 999 is out of range (allowed: 1000..3600000)");
  CHECK(error_of("[queues.mail]\nconcurrency = 10001") ==
        "config: queues.mail.concurrency = 10001 is out of range (allowed: 0..10000)");
  CHECK(error_of("[queues.\"a.b\"]\nkeep_completed = -1") ==
        R"(config: queues."a.b".keep_completed = -1 is out of range (allowed: 0..10000000))");
  CHECK(error_of("[queues.mail]\nconcurrency = 0\nkeep_completed = 0\nkeep_failed = 0") == "");
}

TEST_CASE("max_backoff_ms may not be below backoff_ms, in the defaults and in each queue") {
  CHECK(error_of("[queues.defaults]\nmax_backoff_ms = 500") ==
        "config: queues.defaults.max_backoff_ms = 500 is out of range "
        "(allowed: >= queues.defaults.backoff_ms = 1000)");
  CHECK(error_of("[queues.mail]\nmax_backoff_ms = 500") ==
        "config: queues.mail.max_backoff_ms = 500 is out of range "
        "(allowed: >= queues.mail.backoff_ms = 1000)");
  CHECK(error_of("[queues.defaults]\nbackoff_ms = 400\nmax_backoff_ms = 400\n[queues.mail]\n"
                 "backoff_ms = 401") == "config: queues.mail.max_backoff_ms = 400 is out of range "
                                        "(allowed: >= queues.mail.backoff_ms = 401)");
  CHECK(error_of("", {{"SESSIOND_QUEUES_DEFAULTS_MAX_BACKOFF_MS", "10"}}) ==
        "config: queues.defaults.max_backoff_ms = 10 is out of range "
        "(allowed: >= queues.defaults.backoff_ms = 1000; set by "
        "SESSIOND_QUEUES_DEFAULTS_MAX_BACKOFF_MS)");
  CHECK(error_of("[queues.mail]\nmax_backoff_ms = 1000") == "");
}

TEST_CASE("handlers are refused in [queues.defaults]") {
  const char* refused = "config: queues.defaults.handlers is refused (handlers belong to one "
                        "queue: [queues.<name>.handlers.<type>])";
  CHECK(error_of("[queues.defaults.handlers.send]\nkind = \"noop\"") == refused);
  cfg::config c;
  c.queues.defaults.handlers["send"] = cfg::queue_handler{};
  CHECK_THROWS_WITH(cfg::validate(c), refused);
}

TEST_CASE("a handler's kind is webhook, noop or pull") {
  CHECK(error_of("[queues.mail.handlers.send]\nkind = \"lambda\"") ==
        R"(config: queues.mail.handlers.send.kind = "lambda" is invalid )"
        "(allowed: webhook, noop, pull)");
  CHECK(error_of("[queues.mail.handlers.send]\nkind = \"Webhook\"\nurl = \"https://h/x\"") ==
        R"(config: queues.mail.handlers.send.kind = "Webhook" is invalid )"
        "(allowed: webhook, noop, pull)");
}

TEST_CASE("a webhook handler needs a url, and no other kind takes one") {
  CHECK(error_of("[queues.mail.handlers.send]\nkind = \"webhook\"") ==
        "config: queues.mail.handlers.send.url is missing (allowed: an http:// or https:// URL, "
        R"(required with kind = "webhook"))");
  CHECK(error_of("[queues.mail.handlers.send]\nurl = \"https://h/x\"") ==
        R"(config: queues.mail.handlers.send.url is set but kind = "pull" )"
        R"((allowed: a url only with kind = "webhook"))");
  CHECK(error_of("[queues.mail.handlers.send]\nkind = \"noop\"\nurl = \"https://h/x\"") ==
        R"(config: queues.mail.handlers.send.url is set but kind = "noop" )"
        R"((allowed: a url only with kind = "webhook"))");
}

TEST_CASE("a webhook url must be http:// or https://, and an error masks its password") {
  for (const char* bad : {"ftp://h/x", "h/x", "https://", "http://", "https://h /x", "HTTPS://h"}) {
    CAPTURE(bad);
    CHECK(error_of(std::string("[queues.mail.handlers.send]\nkind = \"webhook\"\nurl = \"") + bad +
                   "\"") == std::string("config: queues.mail.handlers.send.url = \"") + bad +
                                "\" is invalid (allowed: an http:// or https:// URL without "
                                "spaces)");
  }
  std::string message =
      error_of("[queues.mail.handlers.send]\nkind = \"webhook\"\nurl = \"ftp://u:pa55@h/x\"");
  CHECK(message == "config: queues.mail.handlers.send.url = \"ftp://u:****@h/x\" is invalid "
                   "(allowed: an http:// or https:// URL without spaces)");
  for (const char* good : {"http://h", "https://h:8443/hooks/send?a=b"}) {
    CAPTURE(good);
    CHECK(error_of(std::string("[queues.mail.handlers.send]\nkind = \"webhook\"\nurl = \"") + good +
                   "\"") == "");
  }
}

TEST_CASE("a handler's timeout_ms is 100 to 600000") {
  CHECK(error_of("[queues.mail.handlers.send]\ntimeout_ms = 50") ==
        "config: queues.mail.handlers.send.timeout_ms = 50 is out of range (allowed: 100..600000)");
  CHECK(error_of("[queues.mail.handlers.send]\ntimeout_ms = 600001") ==
        "config: queues.mail.handlers.send.timeout_ms = 600001 is out of range "
        "(allowed: 100..600000)");
  CHECK(error_of("[queues.mail.handlers.send]\ntimeout_ms = 100") == "");
}

TEST_CASE("more [queues.<name>] tables than queues.max_queues are refused") {
  CHECK(error_of("[queues]\nmax_queues = 1\n[queues.a]\n[queues.b]\n") ==
        "config: 2 [queues.<name>] tables are too many (allowed: at most queues.max_queues = 1)");
  CHECK(error_of("[queues]\nmax_queues = 1\n[queues.a]\n") == "");
}

// --- schedules ----------------------------------------------------------------------------

TEST_CASE("a schedule reads its keys, in file order") {
  cfg::config c =
      load(schedule("every_s = 60\npriority = 5", "a") + schedule("at = \"23:59\"", "b"));
  REQUIRE(c.queues.schedule.size() == 2);
  const cfg::queue_schedule& a = c.queues.schedule[0];
  CHECK(a.name == "a");
  CHECK(a.queue == "mail");
  CHECK(a.type == "send");
  CHECK(a.every_s == 60);
  CHECK(a.at.empty());
  CHECK(a.priority == 5);
  CHECK(a.payload == "{}");
  CHECK(c.queues.schedule[1].name == "b");
  CHECK(c.queues.schedule[1].at == "23:59");
  CHECK(c.queues.schedule[1].every_s == 0);
}

TEST_CASE("a schedule's name, queue and type are required names") {
  CHECK(error_of("[[queues.schedule]]\nqueue = \"mail\"\ntype = \"send\"\nevery_s = 60") ==
        "config: queues.schedule[0].name is missing (allowed: 1-64 characters of [A-Za-z0-9._:-])");
  CHECK(error_of("[[queues.schedule]]\nname = \"n\"\ntype = \"send\"\nevery_s = 60") ==
        "config: queues.schedule[0].queue is missing (allowed: 1-64 characters of "
        "[A-Za-z0-9._:-])");
  CHECK(error_of("[[queues.schedule]]\nname = \"n\"\nqueue = \"mail\"\nevery_s = 60") ==
        "config: queues.schedule[0].type is missing (allowed: 1-64 characters of [A-Za-z0-9._:-])");
  CHECK(error_of(schedule("every_s = 60", "a b")) ==
        R"(config: queues.schedule[0].name = "a b" is invalid )"
        "(allowed: 1-64 characters of [A-Za-z0-9._:-])");
  CHECK(error_of(schedule("every_s = 60", std::string(65, 'n'))) ==
        "config: queues.schedule[0].name = \"" + std::string(65, 'n') +
            "\" is invalid (allowed: 1-64 characters of [A-Za-z0-9._:-])");
}

TEST_CASE("two schedules may not share a name") {
  CHECK(error_of(schedule("every_s = 60", "x") + schedule("every_s = 60", "y") +
                 schedule("at = \"01:00\"", "x")) ==
        R"(config: queues.schedule[2].name = "x" is already used by queues.schedule[0] )"
        "(allowed: a name no other schedule has)");
}

TEST_CASE("a schedule sets exactly one of every_s and at") {
  CHECK(error_of(schedule("every_s = 60\nat = \"03:00\"")) ==
        "config: queues.schedule[0] sets both every_s and at (allowed: exactly one of them)");
  CHECK(error_of(schedule("")) ==
        "config: queues.schedule[0] sets neither every_s nor at (allowed: exactly one of them)");
}

TEST_CASE("a schedule's every_s, at and priority are checked like every other key") {
  CHECK(error_of(schedule("every_s = 0")) ==
        "config: queues.schedule[0].every_s = 0 is out of range (allowed: 1..31536000)");
  CHECK(error_of(schedule("every_s = 31536001")) ==
        "config: queues.schedule[0].every_s = 31536001 is out of range (allowed: 1..31536000)");
  CHECK(error_of(schedule("every_s = -5")) ==
        "config: queues.schedule[0].every_s = -5 is out of range (allowed: 1..31536000)");
  for (const char* bad : {"24:00", "3:00", "", "03:00:00"}) {
    CAPTURE(bad);
    CHECK(error_of(schedule(std::string("at = \"") + bad + "\"")) ==
          std::string("config: queues.schedule[0].at = \"") + bad +
              "\" is invalid (allowed: HH:MM from 00:00 to 23:59)");
  }
  CHECK(error_of(schedule("every_s = 60\npriority = 1001")) ==
        "config: queues.schedule[0].priority = 1001 is out of range (allowed: -1000..1000)");
  CHECK(error_of(schedule("every_s = 60\npriority = -1001")) ==
        "config: queues.schedule[0].priority = -1001 is out of range (allowed: -1000..1000)");
  CHECK(error_of(schedule("every_s = 31536000\npriority = -1000")) == "");
}

TEST_CASE("[[queues.schedule]] must be an array of tables") {
  CHECK(error_of("[queues.schedule]\nname = \"x\"") ==
        "config: queues.schedule = {...} has the wrong type "
        "(expected an array of tables, [[queues.schedule]])");
  CHECK(error_of("[queues]\nschedule = [1]") ==
        "config: queues.schedule[0] = 1 has the wrong type (expected a table)");
  CHECK(error_of(schedule("every_s = \"60\"")) ==
        R"(config: queues.schedule[0].every_s = "60" has the wrong type (expected an integer))");
  CHECK(error_of("[queues]\nschedule = []") == "");
}

TEST_CASE("a schedule payload given as a table becomes compact JSON") {
  cfg::config c = load(schedule("every_s = 60\npayload = { b = [true, 1, 1.5, \"x\"], a = "
                                "{ c = \"\\u00e9\\\"\" }, n = -2 }"));
  CHECK(c.queues.schedule[0].payload == R"({"a":{"c":"\u00e9\""},"b":[true,1,1.5,"x"],"n":-2})");
  cfg::config sub = load(schedule("every_s = 60") + "[queues.schedule.payload]\nx = 1\n");
  CHECK(sub.queues.schedule[0].payload == R"({"x":1})");
  CHECK(load(schedule("every_s = 60\npayload = {}")).queues.schedule[0].payload == "{}");
}

TEST_CASE("a schedule payload given as a string must hold a JSON object") {
  cfg::config c = load(schedule("every_s = 60\npayload = '{ \"b\": 2, \"a\": [1, null] }'"));
  CHECK(c.queues.schedule[0].payload == R"({"a":[1,null],"b":2})");
  const char* allowed = " is invalid (allowed: a JSON object nested at most 128 deep)";
  for (const char* bad : {"[1]", "1", "\\\"x\\\"", "{", "{\\\"a\\\":1} x", ""}) {
    CAPTURE(bad);
    CHECK(error_of(schedule(std::string("every_s = 60\npayload = \"") + bad + "\"")) ==
          std::string("config: queues.schedule[0].payload = \"") + bad + "\"" + allowed);
  }
  std::string deep = std::string(129, '[') + std::string(129, ']');
  CHECK(error_of(schedule("every_s = 60\npayload = '{\"a\":" + deep + "}'")) ==
        "config: queues.schedule[0].payload = \"{\\\"a\\\":" + deep + "}\"" + allowed);
}

TEST_CASE("brackets inside a payload's strings do not count as nesting") {
  const std::string json = R"({"a":"\")" + std::string(200, '[') + R"(\\","b":[]})";
  CHECK(load(schedule("every_s = 60\npayload = '" + json + "'")).queues.schedule[0].payload ==
        json);
  // A string ending in an escaped backslash ends there: the arrays after it are counted.
  const std::string deep =
      R"({"a":"\\","b":)" + std::string(129, '[') + std::string(129, ']') + "}";
  CHECK_THAT(error_of(schedule("every_s = 60\npayload = '" + deep + "'")),
             Contains("is invalid (allowed: a JSON object nested at most 128 deep)"));
}

TEST_CASE("a schedule payload of another TOML type, a date or a non-finite float is refused") {
  CHECK(error_of(schedule("every_s = 60\npayload = 5")) ==
        "config: queues.schedule[0].payload = 5 has the wrong type "
        "(expected a table or a string holding a JSON object)");
  CHECK(error_of(schedule("every_s = 60\npayload = { when = 1979-05-27 }")) ==
        "config: queues.schedule[0].payload.when = 1979-05-27 has the wrong type "
        "(expected a string, integer, float, boolean, array or table)");
  CHECK(error_of(schedule("every_s = 60\npayload = { r = [1, inf] }")) ==
        "config: queues.schedule[0].payload.r[1] = inf is invalid (allowed: a finite number)");
}

TEST_CASE("a schedule payload may not exceed queues.max_payload_bytes") {
  std::string payload = "every_s = 60\npayload = { s = \"" + std::string(100, 'x') + "\" }";
  CHECK(error_of("[queues]\nmax_payload_bytes = 100\n" + schedule(payload)) ==
        "config: queues.schedule[0].payload is 108 bytes "
        "(allowed: at most queues.max_payload_bytes = 100)");
  CHECK(error_of("[queues]\nmax_payload_bytes = 108\n" + schedule(payload)) == "");
}

// --- the real-number kind -----------------------------------------------------------------

TEST_CASE("queues.max_redis_memory_ratio reads a TOML float or integer") {
  CHECK(load("[queues]\nmax_redis_memory_ratio = 1").queues.max_redis_memory_ratio == 1.0);
  CHECK(load("[queues]\nmax_redis_memory_ratio = 0.5").queues.max_redis_memory_ratio == 0.5);
  CHECK(load("[queues]\nmax_redis_memory_ratio = 1e-3").queues.max_redis_memory_ratio == 0.001);
  CHECK(error_of("[queues]\nmax_redis_memory_ratio = 0") ==
        "config: queues.max_redis_memory_ratio = 0.0 is out of range "
        "(allowed: more than 0, at most 1)");
  CHECK(error_of("[queues]\nmax_redis_memory_ratio = 1.5") ==
        "config: queues.max_redis_memory_ratio = 1.5 is out of range "
        "(allowed: more than 0, at most 1)");
  CHECK(error_of("[queues]\nmax_redis_memory_ratio = nan") ==
        "config: queues.max_redis_memory_ratio = nan is out of range "
        "(allowed: more than 0, at most 1)");
  CHECK(error_of("[queues]\nmax_redis_memory_ratio = \"0.5\"") ==
        R"(config: queues.max_redis_memory_ratio = "0.5" has the wrong type (expected a number))");
}

TEST_CASE("queues.max_redis_memory_ratio reads a decimal number from the environment") {
  const std::string var = "SESSIOND_QUEUES_MAX_REDIS_MEMORY_RATIO";
  CHECK(load("[queues]\nmax_redis_memory_ratio = 0.5", {{var, "0.75"}})
            .queues.max_redis_memory_ratio == 0.75);
  CHECK(load("", {{var, "1"}}).queues.max_redis_memory_ratio == 1.0);
  CHECK(error_of("", {{var, "0"}}) == "config: queues.max_redis_memory_ratio = 0.0 is out of range "
                                      "(allowed: more than 0, at most 1; set by " +
                                          var + ")");
  CHECK(error_of("", {{var, "1.5"}}) ==
        "config: queues.max_redis_memory_ratio = 1.5 is out of range "
        "(allowed: more than 0, at most 1; set by " +
            var + ")");
  for (const char* bad : {"abc", "", " 0.5", "0.5 ", "1e-3", "inf", "nan", "0,5", "1.2.3", "+1"}) {
    CAPTURE(bad);
    CHECK(error_of("", {{var, bad}}) == "config: " + var + " = \"" + bad +
                                            "\" is not a decimal number (allowed: more than 0, "
                                            "at most 1)");
  }
}

TEST_CASE("a ratio is printed so that it reads back as the same number") {
  for (double v : {0.9, 1.0, 0.1 + 0.2, 1e-7, 0.3333333333333333}) {
    CAPTURE(v);
    cfg::config c;
    c.queues.max_redis_memory_ratio = v;
    CHECK(load(cfg::to_toml(c)).queues.max_redis_memory_ratio == v);
  }
  cfg::config one;
  one.queues.max_redis_memory_ratio = 1.0;
  CHECK_THAT(cfg::to_toml(one), Contains("\nmax_redis_memory_ratio = 1.0\n"));
}

// --- environment --------------------------------------------------------------------------

TEST_CASE("SESSIOND_QUEUES_ and SESSIOND_QUEUES_DEFAULTS_ variables beat the file") {
  cfg::config c = load("[queues]\nmax_waiters = 5\nrequire_noeviction = false\n"
                       "[queues.defaults]\nlease_ms = 2000\n",
                       {{"SESSIOND_QUEUES_MAX_WAITERS", "6"},
                        {"SESSIOND_QUEUES_REQUIRE_NOEVICTION", "yes"},
                        {"SESSIOND_QUEUES_DEFAULTS_LEASE_MS", "3000"},
                        {"SESSIOND_REDIS_QUEUE_URL", "rediss://:pw@jobs:6390/0"}});
  CHECK(c.queues.max_waiters == 6);
  CHECK(c.queues.require_noeviction);
  CHECK(c.queues.defaults.lease_ms == 3000);
  CHECK(c.redis.queue_url == "rediss://:pw@jobs:6390/0");
}

TEST_CASE("named queues, handlers and schedules cannot be set from the environment") {
  for (const char* var : {"SESSIOND_QUEUES_MAIL_LEASE_MS", "SESSIOND_QUEUES_SCHEDULE",
                          "SESSIOND_QUEUES_DEFAULTS_HANDLERS"}) {
    CAPTURE(var);
    CHECK(error_of("[queues.mail]\n", {{var, "1"}}) ==
          std::string("config: unknown environment variable \"") + var +
              "\" (allowed: SESSIOND_<SECTION>_<KEY> of a key in docs/configuration.md)");
  }
}

TEST_CASE("redis.queue_url is empty or a redis:// or rediss:// URL") {
  CHECK(error_of("[redis]\nqueue_url = \"http://:pw@jobs:6379\"") ==
        R"(config: redis.queue_url = "http://:****@jobs:6379" is invalid )"
        "(allowed: empty (redis.url) or a redis:// or rediss:// (TLS) URL without spaces)");
  CHECK(load("[redis]\nqueue_url = \"redis://jobs:6379/1\"").redis.queue_url ==
        "redis://jobs:6379/1");
}

// --- printing and equality ----------------------------------------------------------------

TEST_CASE("to_toml output with named queues, handlers and schedules loads back equal") {
  cfg::config c = load(queues_example);
  REQUIRE(c.queues.named.size() == 2);
  REQUIRE(c.queues.schedule.size() == 2);
  cfg::config defaults;
  CHECK_FALSE(c.queues.named.at("mail") == defaults.queues.defaults);
  // The password is masked in the output; the rest must come back exactly.
  c.queues.named.at("mail").handlers.at("send").url = "https://hook@notifier.internal/send?x=1";
  std::string text = cfg::to_toml(c);
  cfg::config again = load(text);
  CHECK(again == c);
  CHECK(cfg::to_toml(again) == text);
  CHECK(again.queues.named.at("reports.v2").max_backoff_ms == 500);
  CHECK(again.queues.named.at("reports.v2").backoff_ms == 500);
  CHECK(again.queues.schedule[1].payload == R"({"note":"it's","older_than_days":90})");
}

TEST_CASE("to_toml masks the password of a webhook url and of redis.queue_url") {
  cfg::config c = load(queues_example, {{"SESSIOND_REDIS_QUEUE_URL", "redis://:pw77@jobs:6379"}});
  std::string text = cfg::to_toml(c);
  CHECK_THAT(text, Contains("url = \"https://hook:****@notifier.internal/send?x=1\"\n"));
  CHECK_THAT(text, Contains("queue_url = \"redis://:****@jobs:6379\"\n"));
  CHECK_THAT(text, !Contains("s3cret"));
  CHECK_THAT(text, !Contains("pw77"));
  cfg::config again = load(text);
  CHECK(again.queues.named.at("mail").handlers.at("send").url ==
        "https://hook:****@notifier.internal/send?x=1");
}

TEST_CASE("to_toml quotes queue names and job types that are not bare TOML keys") {
  std::string text = cfg::to_toml(load(queues_example));
  CHECK_THAT(text, Contains("\n[queues.\"reports.v2\"]\n"));
  CHECK_THAT(text, Contains("\n[queues.mail.handlers.\"user:welcome\"]\nkind = \"pull\"\n"));
  CHECK_THAT(text, Contains("\n[[queues.schedule]]\nname = \"archive:nightly\"\n"));
}

TEST_CASE("two configs differing only in a named queue, handler or schedule are not equal") {
  const cfg::config base = load(queues_example);
  cfg::config c = base;
  c.queues.named.at("reports.v2").keep_failed = 1;
  CHECK(c != base);
  c = base;
  c.queues.named.at("mail").handlers.at("send").timeout_ms = 2501;
  CHECK(c != base);
  c = base;
  c.queues.named.at("mail").handlers.erase("bounce");
  CHECK(c != base);
  c = base;
  c.queues.schedule[1].priority = 0;
  CHECK(c != base);
  c = base;
  c.queues.named.erase("mail");
  CHECK(c != base);
  c = base;
  CHECK(c == base);
}

TEST_CASE("keys() lists the [queues] and [queues.defaults] keys with their variables") {
  int queue_keys = 0;
  for (const auto& k : cfg::keys()) {
    if (k.name.rfind("queues.", 0) == 0) {
      ++queue_keys;
    }
    if (k.name == "queues.defaults.lease_ms") {
      CHECK(k.env == "SESSIOND_QUEUES_DEFAULTS_LEASE_MS");
      CHECK(k.default_value == "30000");
      CHECK(k.allowed == "1000..3600000");
    }
    if (k.name == "queues.defaults.max_backoff_ms") {
      CHECK(k.allowed == "1..604800000, >= queues.defaults.backoff_ms");
    }
    if (k.name == "queues.max_redis_memory_ratio") {
      CHECK(k.default_value == "0.9");
      CHECK(k.allowed == "more than 0, at most 1");
    }
  }
  CHECK(queue_keys == 10 + 13);
}
