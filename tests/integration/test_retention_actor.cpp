// Integration tests of the retention actor against the PostgreSQL at POSTGRES_URL: requested and
// scheduled runs, the catch-up after a missed retention.at, two nodes at once, disabled and dry-run
// configurations, shutdown, metrics, the log line and the JSON report.
#include "actors/retention.hpp"
#include "adapters/metrics/registry.hpp"
#include "adapters/metrics/text_serializer.hpp"
#include "tests/integration/retention_support.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <future>
#include <mutex>
#include <thread>

using namespace sessiond::test::retention;
using namespace std::chrono_literals;
namespace actors = sessiond::actors;
namespace messages = sessiond::messages;
namespace metrics = sessiond::metrics;

namespace {

/// A clock the test moves from its own thread while the actor reads it.
class test_clock : public sessiond::model::clock {
public:
  explicit test_clock(std::int64_t ms) : now_(ms) {}
  std::int64_t now_ms() const override { return now_.load(); }
  void set(std::int64_t ms) { now_ = ms; }

private:
  std::atomic<std::int64_t> now_;
};

/// Collects the log lines of an actor.
struct log_sink {
  std::mutex mtx;
  std::vector<std::string> lines;
  std::function<void(std::string, std::string)> fn() {
    return [this](std::string level, std::string line) {
      std::lock_guard<std::mutex> guard{mtx};
      lines.push_back(level + " " + line);
    };
  }
  std::vector<std::string> get() {
    std::lock_guard<std::mutex> guard{mtx};
    return lines;
  }
};

struct fixture {
  scratch_schema schema;
  client db = schema.migrated();
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  metrics::Registry registry;
  log_sink log;
  std::vector<messages::retention_actor> spawned;

  ~fixture() {
    for (auto& a : spawned) // the actor_system's destructor waits for every actor to end
      caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  }

  messages::retention_actor
  spawn(std::shared_ptr<actors::retention_options> o,
        std::shared_ptr<messages::retention_info> info = nullptr,
        const sessiond::model::clock& clock = sessiond::model::system_clock(),
        metrics::Registry* reg = nullptr) {
    if (!info)
      info = std::make_shared<messages::retention_info>();
    auto a = actors::spawn_retention(sys, std::move(o), reg ? *reg : registry, info, clock);
    spawned.push_back(a);
    return a;
  }

  std::shared_ptr<actors::retention_options> options() {
    auto o = std::make_shared<actors::retention_options>();
    o->db = schema.options();
    o->params.batch_size = 1000;
    o->params.pause = 0ms;
    o->params.node_id = "node-a";
    o->log = log.fn();
    o->catch_up = false; // the catch-up test turns it on
    return o;
  }
};

messages::retention_report run(caf::actor_system& sys, const messages::retention_actor& a,
                               bool dry) {
  caf::scoped_actor self{sys};
  messages::retention_report out;
  self->request(a, std::chrono::seconds(60), messages::retention_run_atom::value, dry)
      .receive([&](messages::retention_report& r) { out = std::move(r); },
               [&](caf::error& e) { FAIL("no report: " << caf::to_string(e)); });
  return out;
}

double value(metrics::Counter& c) {
  return c.Value();
}

} // namespace

TEST_CASE("a requested run answers its report, counts it in the metrics and logs one line",
          "[retention]") {
  fixture f;
  fill_simple(f.db, 2500);
  auto info = std::make_shared<messages::retention_info>();
  auto a = f.spawn(f.options(), info);

  auto dry = run(f.sys, a, true);
  CHECK(dry.status == retention_status::ran);
  CHECK(dry.dry_run);
  CHECK(dry.rows_deleted == 2500);
  CHECK(remaining(f.db, "e") == 2500);

  auto r = run(f.sys, a, false);
  CHECK(r.status == retention_status::ran);
  CHECK_FALSE(r.dry_run);
  CHECK(r.rows_deleted == 2500);
  CHECK(r.batches >= 3);
  CHECK(remaining(f.db, "e") == 0);
  CHECK(audit(f.db, r.audit_id).rows_deleted == 2500);

  actors::retention_metrics m(f.registry); // the same metrics, registration merges
  CHECK(value(m.runs_success) == 2);
  CHECK(value(m.runs_failure) == 0);
  CHECK(value(m.rows_deleted) == 2500); // the dry run deleted nothing
  CHECK(m.last_run_rows.Value() == 2500);
  CHECK(m.last_success_timestamp.Value() == Approx(r.finished_ms / 1000.0));
  auto text = metrics::serialize(f.registry);
  for (const char* name :
       {"sessiond_retention_runs_total{outcome=\"success\"} 2",
        "sessiond_retention_runs_total{outcome=\"failure\"} 0",
        "sessiond_retention_runs_total{outcome=\"skipped\"} 0",
        "sessiond_retention_rows_deleted_total 2500", "sessiond_retention_failures_total 0",
        "sessiond_retention_last_run_rows 2500", "sessiond_retention_last_duration_seconds ",
        "sessiond_retention_last_success_timestamp_seconds "})
    CHECK_THAT(text, Catch::Contains(name));

  auto lines = f.log.get();
  REQUIRE(lines.size() == 2);
  CHECK_THAT(lines[0], Catch::StartsWith("info retention: ran, dry run: 2500 rows eligible"));
  CHECK_THAT(lines[1], Catch::StartsWith("info retention: ran, deleted 2500 rows"));

  auto snap = info->get();
  REQUIRE(snap.last);
  CHECK(snap.last->audit_id == r.audit_id);
  CHECK_FALSE(snap.running);
  CHECK(snap.last_success_ms == r.finished_ms);

  auto j = actors::retention_report_json(r);
  CHECK(j["status"] == "ran");
  CHECK(j["dry_run"] == false);
  CHECK(j["rows_deleted"] == 2500);
  CHECK(j["audit_id"] == r.audit_id);
  CHECK(j["days"] == 60);
  CHECK(j["node_id"] == "node-a");
  CHECK(j["actor"] == "sessiond:retention");
  CHECK(j["error"].is_null());
  CHECK(j["started_at"].get<std::string>().size() == 24); // 2026-11-21T03:30:00.123Z
  CHECK_THAT(j["criterion"].get<std::string>(), Catch::Contains("now() - 60 days"));
}

TEST_CASE("two nodes triggering retention at once: one run deletes, the other skips",
          "[retention]") {
  fixture f;
  fill_simple(f.db, 3000);
  std::promise<void> a_holds_lock, b_answered;
  auto b_done = b_answered.get_future().share();
  std::atomic<bool> first{true};
  auto oa = f.options();
  oa->hooks.on_batch = [&, b_done](const retention_batch&) {
    if (first.exchange(false)) { // node A between its first and second batch: lock held
      a_holds_lock.set_value();
      b_done.wait_for(30s);
    }
  };
  auto ob = f.options();
  ob->params.node_id = "node-b";
  metrics::Registry registry_b;
  auto a = f.spawn(oa);
  auto b = f.spawn(ob, nullptr, sessiond::model::system_clock(), &registry_b);

  auto ra = std::async(std::launch::async, [&] { return run(f.sys, a, false); });
  REQUIRE(a_holds_lock.get_future().wait_for(30s) == std::future_status::ready);
  auto rb = run(f.sys, b, false);
  b_answered.set_value();
  auto report_a = ra.get();

  CHECK(report_a.status == retention_status::ran);
  CHECK(report_a.rows_deleted == 3000);
  CHECK(rb.status == retention_status::skipped);
  CHECK(rb.rows_deleted == 0);
  CHECK(remaining(f.db, "e") == 0);
  CHECK(count(f.db, "select count(*) from session_retention_audit") == 1);
  CHECK(count(f.db, "select count(*) from session_retention_audit where node_id = 'node-a'") == 1);
  CHECK(value(actors::retention_metrics(registry_b).runs_skipped) == 1);
  CHECK(value(actors::retention_metrics(f.registry).runs_success) == 1);
}

TEST_CASE("the scheduled run starts when the clock reaches retention.at, then waits a day",
          "[retention]") {
  fixture f;
  fill_simple(f.db, 100);
  const std::int64_t day = 86'400'000;
  const std::int64_t due = 1'795'231'800'000; // 2026-11-21 03:30:00 UTC
  test_clock clock(due - 5000);
  auto o = f.options();
  o->at = "03:30";
  o->max_wait = 20ms; // look at the (test) clock often
  auto info = std::make_shared<messages::retention_info>();
  f.spawn(o, info, clock);
  auto deadline = std::chrono::steady_clock::now() + 20s;
  while (info->get().next_run_ms == 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(1ms); // the actor starts on its own thread
  CHECK(info->get().next_run_ms == due);
  std::this_thread::sleep_for(200ms); // ticks come and go: not due yet
  CHECK_FALSE(info->get().last);
  CHECK(remaining(f.db, "e") == 100);

  clock.set(due);
  deadline = std::chrono::steady_clock::now() + 20s;
  // The report is published when the run ends, the next due time just after it.
  while ((!info->get().last || info->get().next_run_ms == due) &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(5ms);
  auto snap = info->get();
  REQUIRE(snap.last);
  CHECK(snap.last->status == retention_status::ran);
  CHECK(snap.last->rows_deleted == 100);
  CHECK(snap.next_run_ms == due + day);
  CHECK(remaining(f.db, "e") == 0);
  // Nothing more runs while the clock stays before tomorrow's 03:30.
  clock.set(due + day - 1);
  std::this_thread::sleep_for(100ms);
  CHECK(count(f.db, "select count(*) from session_retention_audit") == 1);
}

TEST_CASE("a node that starts after a missed retention.at catches up a minute later, once, unless "
          "a run started since",
          "[retention]") {
  fixture f;
  fill_simple(f.db, 100);
  const std::int64_t day = 86'400'000;
  const std::int64_t missed = 1'795'231'800'000; // 2026-11-21 03:30:00 UTC
  const std::int64_t start = missed + 2 * 3'600'000;
  test_clock clock(start); // 05:30: today's run was missed, tomorrow's is 22 h away
  auto o = f.options();
  o->at = "03:30";
  o->max_wait = 20ms;
  o->catch_up = true;
  auto add_audit = [&](const char* started_at, bool dry, const char* error) {
    f.db.exec_params("insert into session_retention_audit (started_at, finished_at, criterion, "
                     "actor, node_id, dry_run, error) values ($1::timestamptz, $1::timestamptz, "
                     "'test', 'sessiond:retention', 'node-b', $2::boolean, $3)",
                     {std::string(started_at), std::string(dry ? "true" : "false"),
                      error ? sessiond::postgres::field(error) : std::nullopt});
  };
  auto wait_started = [](const std::shared_ptr<messages::retention_info>& info) {
    auto deadline = std::chrono::steady_clock::now() + 20s;
    while (info->get().next_run_ms == 0 && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(1ms);
    REQUIRE(info->get().next_run_ms == missed + day);
  };
  auto runs = [&] { return count(f.db, "select count(*) from session_retention_audit"); };

  SECTION("no run since: one run a minute after start-up, none later") {
    // Runs before the missed time, failed runs and dry runs since do not count.
    add_audit("2026-11-20 03:30:00+00", false, nullptr);
    add_audit("2026-11-21 03:30:05+00", false, "retention: lock_timeout");
    add_audit("2026-11-21 03:31:00+00", true, nullptr);
    auto info = std::make_shared<messages::retention_info>();
    f.spawn(o, info, clock);
    wait_started(info);
    std::this_thread::sleep_for(200ms); // ticks come and go: the minute has not passed
    CHECK(runs() == 3);
    CHECK(remaining(f.db, "e") == 100);

    clock.set(start + 60'000);
    auto deadline = std::chrono::steady_clock::now() + 20s;
    while (!info->get().last && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(5ms);
    auto snap = info->get();
    REQUIRE(snap.last);
    CHECK(snap.last->status == retention_status::ran);
    CHECK(snap.last->rows_deleted == 100);
    CHECK(snap.next_run_ms == missed + day); // the schedule stays as it was
    CHECK(remaining(f.db, "e") == 0);
    CHECK(runs() == 4);
    auto lines = f.log.get();
    CHECK(std::count_if(lines.begin(), lines.end(), [](const std::string& l) {
            return l == "info retention: catch-up: no run started since "
                        "2026-11-21T03:30:00.000Z (retention.at), running now";
          }) == 1);

    clock.set(start + 3'600'000);
    std::this_thread::sleep_for(200ms);
    CHECK(runs() == 4);
  }
  // Spawns the actor, waits until it scheduled, moves the clock past the catch-up check and
  // gives the actor time to act on it.
  auto spawn_and_pass_the_check = [&] {
    auto info = std::make_shared<messages::retention_info>();
    f.spawn(o, info, clock);
    wait_started(info);
    clock.set(start + 60'000);
    std::this_thread::sleep_for(300ms);
    return info;
  };

  SECTION("a run of another node since the missed time: no catch-up") {
    add_audit("2026-11-21 03:30:01+00", false, nullptr);
    auto info = spawn_and_pass_the_check();
    CHECK(runs() == 1);
    CHECK(remaining(f.db, "e") == 100);
    CHECK_FALSE(info->get().last);
  }
  SECTION("retention.catch_up = false: nothing before the scheduled time") {
    o->catch_up = false;
    spawn_and_pass_the_check();
    CHECK(runs() == 0);
    CHECK(remaining(f.db, "e") == 100);
  }
  SECTION("started less than an hour before retention.at: the scheduled run, no catch-up") {
    clock.set(missed + day - 30 * 60'000);
    auto info = std::make_shared<messages::retention_info>();
    f.spawn(o, info, clock);
    wait_started(info);
    clock.set(missed + day - 30 * 60'000 + 60'000);
    std::this_thread::sleep_for(300ms);
    CHECK(runs() == 0);
    clock.set(missed + day);
    auto deadline = std::chrono::steady_clock::now() + 20s;
    while (!info->get().last && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(5ms);
    CHECK(runs() == 1);
    CHECK(remaining(f.db, "e") == 0);
  }
}

TEST_CASE("retention.dry_run makes scheduled and requested runs count only", "[retention]") {
  fixture f;
  fill_simple(f.db, 100);
  auto o = f.options();
  o->dry_run = true;
  auto a = f.spawn(o);
  auto r = run(f.sys, a, false);
  CHECK(r.status == retention_status::ran);
  CHECK(r.dry_run);
  CHECK(r.rows_deleted == 100);
  CHECK(remaining(f.db, "e") == 100);
  CHECK(audit(f.db, r.audit_id).dry_run);
}

TEST_CASE("with retention.enabled false nothing is scheduled, a deleting run answers disabled "
          "and a dry run still counts",
          "[retention]") {
  fixture f;
  fill_simple(f.db, 100);
  const std::int64_t due = 1'795'231'800'000; // 2026-11-21 03:30:00 UTC
  test_clock clock(due - 50);
  auto o = f.options();
  o->enabled = false;
  o->max_wait = 20ms;
  auto info = std::make_shared<messages::retention_info>();
  auto a = f.spawn(o, info, clock);
  auto r = run(f.sys, a, false);
  clock.set(due);
  std::this_thread::sleep_for(300ms); // retention.at has come on the test clock: no run
  CHECK(info->get().next_run_ms == 0);
  CHECK(r.status == retention_status::disabled);
  CHECK(r.rows_deleted == 0);
  CHECK(remaining(f.db, "e") == 100);
  CHECK(count(f.db, "select count(*) from session_retention_audit") == 0);
  auto dry = run(f.sys, a, true);
  CHECK(dry.status == retention_status::ran);
  CHECK(dry.rows_deleted == 100);
  CHECK(remaining(f.db, "e") == 100);
  auto j = actors::retention_report_json(r);
  CHECK(j["status"] == "disabled");
  CHECK(j["audit_id"].is_null());
}

TEST_CASE("the stop flag ends a run in progress before its next batch", "[retention]") {
  fixture f;
  fill_simple(f.db, 5000);
  auto o = f.options();
  o->hooks.on_batch = [stop = o->stop](const retention_batch&) { stop->store(true); };
  auto a = f.spawn(o);
  auto r = run(f.sys, a, false);
  CHECK(r.status == retention_status::failed);
  CHECK_THAT(r.error, Catch::Contains("cancelled"));
  CHECK(r.rows_deleted == 1000);
  CHECK(remaining(f.db, "e") == 4000);
  CHECK(audit(f.db, r.audit_id).rows_deleted == 1000);
  // Once stopping, a new request does not start a run at all.
  auto again = run(f.sys, a, false);
  CHECK(again.status == retention_status::failed);
  CHECK(again.audit_id == 0);
  CHECK(value(actors::retention_metrics(f.registry).failures) == 1); // the refusal is no run
  auto lines = f.log.get();
  REQUIRE(lines.size() == 2);
  CHECK_THAT(lines[0], Catch::StartsWith("warn retention: FAILED, deleted 1000 rows"));
}

TEST_CASE("an unreachable PostgreSQL fails the run with a clear error, not the actor",
          "[retention]") {
  fixture f;
  auto o = f.options();
  o->db.url = "postgresql://postgres@127.0.0.1:1/sessiond"; // nothing listens on port 1
  o->db.connect_timeout = 500ms;
  auto a = f.spawn(o);
  for (int i = 0; i < 2; ++i) {
    auto r = run(f.sys, a, false);
    CHECK(r.status == retention_status::failed);
    CHECK_THAT(r.error, Catch::Contains("connect_failed"));
  }
  CHECK(value(actors::retention_metrics(f.registry).runs_failure) == 2);
}

TEST_CASE("the actor's options come from the retention section and node.id", "[retention]") {
  auto cfg = sessiond::config::load_string(
      "[node]\nid = \"n7\"\n[retention]\nenabled = false\ndry_run = true\ndays = 30\n"
      "at = \"04:15\"\nbatch_size = 777\npause_ms = 5\nmax_rows_per_run = 9999\n",
      {});
  auto o = actors::make_retention_options(cfg);
  CHECK_FALSE(o.enabled);
  CHECK(o.dry_run);
  CHECK(o.at == "04:15");
  CHECK(o.params.days == 30);
  CHECK(o.params.batch_size == 777);
  CHECK(o.params.pause == 5ms);
  CHECK(o.params.max_rows_per_run == 9999);
  CHECK(o.params.node_id == "n7");
  CHECK(o.stop);
  CHECK_FALSE(o.stop->load());
}
