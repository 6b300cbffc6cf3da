// The job queue's scripts against the real Redis, below the HTTP API: every transition, its
// fencing, the key layout (one hash tag per queue), ordering, dedup, retries and the keep policy.
#include "adapters/queue/store.hpp"
#include "support.hpp"

#include <nlohmann/json.hpp>

#include <future>

using namespace sessiond;
using queue::finish_outcome;

namespace {

/// A store over a client of the test's own, with blocking wrappers and a clock the test moves.
struct fixture {
  test::io_threads threads;
  std::unique_ptr<redis::client> client;
  std::unique_ptr<queue::store> store;
  std::string prefix = test::unique_prefix();
  std::string q = "mail";
  queue::queue_policy policy;
  std::int64_t now = 1'800'000'000'000;

  fixture() {
    redis::client_options o;
    std::string err;
    REQUIRE(redis::parse_url(test::env_or_fail("REDIS_URL"), o, err));
    client = std::make_unique<redis::client>(threads.io, o);
    client->start();
    // On a Redis Cluster: until every master is connected, not only the first.
    REQUIRE(test::eventually([&] { return client->all_slots_connected(); }));
    store = std::make_unique<queue::store>(*client, prefix);
  }
  ~fixture() { client->stop(); }

  template <class R, class F>
  R wait(F f) {
    std::promise<R> p;
    auto fut = p.get_future();
    f([&p](R&& r) { p.set_value(std::move(r)); });
    REQUIRE(fut.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
    return fut.get();
  }

  queue::enqueue_result enqueue(std::vector<model::job_spec> jobs,
                                std::optional<queue::schedule_fence> fence = std::nullopt) {
    auto r = wait<queue::enqueue_result>(
        [&](auto done) { store->enqueue(0, q, jobs, policy, now, fence, done); });
    if (r.error == queue::errc::redis)
      WARN("enqueue: " << r.detail);
    return r;
  }
  queue::enqueue_result enqueue_one(std::string type, std::int64_t priority = 0,
                                    std::int64_t delay_ms = 0, std::string dedup = "") {
    model::job_spec j;
    j.type = std::move(type);
    j.payload = R"({"n":1})";
    j.priority = priority;
    j.delay_ms = delay_ms;
    j.dedup_key = std::move(dedup);
    return enqueue({j});
  }
  queue::lease_result lease(std::int64_t max, std::vector<std::string> types = {},
                            std::int64_t lease_ms = 30000) {
    return wait<queue::lease_result>([&](auto done) {
      store->lease(0, q, max, lease_ms, types, queue::token_prefix(), now, done);
    });
  }
  queue::finish_result finish(std::vector<queue::finish_entry> e) {
    return wait<queue::finish_result>(
        [&](auto done) { store->finish(0, q, e, policy, now, done); });
  }
  queue::finished_job complete(const queue::leased_job& j, std::string result = "") {
    auto r = finish({{j.id, j.token, 'c', std::move(result), 0.5}});
    REQUIRE(r.ok());
    return r.jobs.at(0);
  }
  queue::finished_job fail(const queue::leased_job& j, char kind = 'f', double random = 0.5) {
    auto r = finish({{j.id, j.token, kind, "boom", random}});
    REQUIRE(r.ok());
    return r.jobs.at(0);
  }
  queue::tick_result tick() {
    return wait<queue::tick_result>([&](auto done) { store->tick(0, q, policy, now, done); });
  }
  queue::queue_counts counts() {
    return wait<queue::queue_counts>([&](auto done) { store->counts(0, q, done); });
  }
  queue::job_record job(const std::string& id) {
    return wait<queue::job_record>([&](auto done) { store->job(0, q, id, done); });
  }
  test::redis_probe probe{test::env_or_fail("REDIS_URL")};
};

std::vector<std::string> ids_of(const queue::lease_result& r) {
  std::vector<std::string> out;
  for (const auto& j : r.jobs)
    out.push_back(j.id);
  return out;
}

} // namespace

TEST_CASE("every key of a queue carries the queue's hash tag") {
  fixture f;
  f.enqueue_one("send", 0, 0, "k1");
  f.enqueue_one("send", 0, 5000);
  auto l = f.lease(1);
  f.complete(l.jobs.at(0));
  auto keys = f.probe.keys(f.prefix + "*");
  REQUIRE(keys.size() >= 5);
  for (const auto& k : keys)
    CHECK(k.rfind(f.prefix + "{q:mail}:", 0) == 0);
}

TEST_CASE("an enqueued job waits, is leased with a token, and completes with its result") {
  fixture f;
  auto e = f.enqueue_one("send");
  REQUIRE(e.ok());
  REQUIRE(e.jobs.size() == 1);
  CHECK(e.jobs[0].state == "waiting");
  CHECK(e.jobs[0].created);
  auto c = f.counts();
  CHECK(c.waiting == 1);
  CHECK(c.oldest_ready_ms == f.now);
  auto l = f.lease(10);
  REQUIRE(l.jobs.size() == 1);
  const auto& j = l.jobs[0];
  CHECK(j.id == e.jobs[0].id);
  CHECK(j.type == "send");
  CHECK(j.payload == R"({"n":1})");
  CHECK(j.attempt == 1);
  CHECK(j.expires_ms == f.now + 30000);
  CHECK(f.counts().active == 1);
  f.now += 100;
  auto done = f.complete(j, R"({"sent":true})");
  CHECK(done.what == finish_outcome::completed);
  CHECK(done.lease_start_ms == f.now - 100);
  auto rec = f.job(j.id);
  CHECK(rec.state == "completed");
  CHECK(rec.result == R"({"sent":true})");
  CHECK(rec.finished_ms == f.now);
  auto after = f.counts();
  CHECK(after.active == 0);
  CHECK(after.completed == 1);
  CHECK(f.probe.command({"HGET", queue::key_base(f.prefix, "mail") + "meta", "n"}).str == "0");
}

TEST_CASE("a stale or foreign lease token is refused and changes nothing") {
  fixture f;
  f.enqueue_one("send");
  auto l = f.lease(1);
  auto j = l.jobs.at(0);
  auto wrong = j;
  wrong.token = "nope";
  CHECK(f.complete(wrong).what == finish_outcome::lost);
  CHECK(f.job(j.id).state == "active");
  CHECK(f.complete(j).what == finish_outcome::completed);
  CHECK(f.complete(j).what == finish_outcome::lost); // twice: the second is refused
  CHECK(f.fail(j).what == finish_outcome::lost);
  CHECK(f.job(j.id).state == "completed");
}

TEST_CASE("higher priority is leased first, FIFO within a priority, across types") {
  fixture f;
  auto a = f.enqueue_one("a").jobs[0].id;
  auto b = f.enqueue_one("b", 5).jobs[0].id;
  auto c = f.enqueue_one("a", 5).jobs[0].id;
  auto d = f.enqueue_one("b").jobs[0].id;
  auto e = f.enqueue_one("a", -3).jobs[0].id;
  CHECK(ids_of(f.lease(10)) == std::vector<std::string>{b, c, a, d, e});
}

TEST_CASE("a lease for some types leaves the others waiting") {
  fixture f;
  auto a = f.enqueue_one("a").jobs[0].id;
  auto b = f.enqueue_one("b").jobs[0].id;
  CHECK(ids_of(f.lease(10, {"b", "zzz"})) == std::vector<std::string>{b});
  CHECK(f.counts().waiting == 1);
  CHECK(ids_of(f.lease(10, {"a"})) == std::vector<std::string>{a});
  CHECK(f.lease(10).jobs.empty());
}

TEST_CASE("a delayed job is leased only from its due time on") {
  fixture f;
  auto id = f.enqueue_one("send", 0, 2000).jobs[0];
  CHECK(id.state == "delayed");
  CHECK(f.lease(1).jobs.empty());
  CHECK(f.counts().delayed == 1);
  f.now += 1999;
  CHECK(f.lease(1).jobs.empty());
  f.now += 1;
  auto t = f.tick();
  CHECK(t.promoted == 1);
  CHECK(f.lease(1).jobs.at(0).id == id.id);
}

TEST_CASE("a dedup key returns the unfinished job that holds it and is released when it ends") {
  fixture f;
  auto first = f.enqueue_one("send", 0, 0, "user-7");
  auto again = f.enqueue_one("send", 0, 0, "user-7");
  REQUIRE(again.jobs.size() == 1);
  CHECK(again.jobs[0].id == first.jobs[0].id);
  CHECK_FALSE(again.jobs[0].created);
  CHECK(f.counts().waiting == 1);
  auto l = f.lease(1);
  CHECK(f.enqueue_one("send", 0, 0, "user-7").jobs[0].id == first.jobs[0].id); // active
  f.complete(l.jobs.at(0));
  auto third = f.enqueue_one("send", 0, 0, "user-7");
  CHECK(third.jobs[0].created);
  CHECK(third.jobs[0].id != first.jobs[0].id);
}

TEST_CASE("a batch is all or nothing against max_length, and dedups within itself") {
  fixture f;
  f.policy.max_length = 5;
  std::vector<model::job_spec> batch(4);
  for (auto& j : batch) {
    j.type = "t";
    j.payload = "{}";
  }
  batch[3].dedup_key = "x";
  batch[2].dedup_key = "x";
  auto e = f.enqueue(batch);
  REQUIRE(e.ok());
  CHECK(e.jobs.size() == 4);
  CHECK(e.jobs[3].id == e.jobs[2].id);
  CHECK_FALSE(e.jobs[3].created);
  CHECK(f.counts().waiting == 3);
  auto over = f.enqueue(std::vector<model::job_spec>(3, batch[0]));
  CHECK(over.error == queue::errc::full);
  CHECK(over.unfinished == 3);
  CHECK(f.counts().waiting == 3); // nothing of the refused batch was written
  CHECK(f.enqueue(std::vector<model::job_spec>(2, batch[0])).ok());
  CHECK(f.enqueue_one("t").error == queue::errc::full);
}

TEST_CASE("a failed attempt is retried after a full-jitter backoff, then fails for good") {
  fixture f;
  f.policy.max_attempts = 3;
  f.policy.backoff_ms = 1000;
  auto id = f.enqueue_one("send").jobs[0].id;
  auto l1 = f.lease(1).jobs.at(0);
  auto r1 = f.fail(l1, 'f', 0.5); // cap 1000 ms after attempt 1: delay 500
  CHECK(r1.what == finish_outcome::retried_later);
  auto rec = f.job(id);
  CHECK(rec.state == "delayed");
  CHECK(rec.due_ms == f.now + 500);
  CHECK(rec.last_error == "\"boom\"");
  f.now += 499;
  CHECK(f.lease(1).jobs.empty());
  f.now += 1;
  auto l2 = f.lease(1).jobs.at(0);
  CHECK(l2.attempt == 2);
  auto r2 = f.fail(l2, 'f', 0.999); // cap 2000 ms after attempt 2
  CHECK(r2.what == finish_outcome::retried_later);
  CHECK(f.job(id).due_ms == f.now + 1998);
  f.now += 2000;
  auto l3 = f.lease(1).jobs.at(0);
  CHECK(l3.attempt == 3);
  CHECK(f.fail(l3).what == finish_outcome::failed);
  rec = f.job(id);
  CHECK(rec.state == "failed");
  auto history = nlohmann::json::parse(rec.history);
  REQUIRE(history.size() == 3);
  CHECK(history[0]["attempt"] == 1);
  CHECK(history[2]["outcome"] == "failed");
  CHECK(history[2]["error"] == "boom");
  CHECK(f.counts().failed == 1);
}

TEST_CASE("a zero jitter draw retries at once, behind the jobs already waiting") {
  fixture f;
  auto id = f.enqueue_one("send").jobs[0].id;
  auto l = f.lease(1).jobs.at(0);
  auto other = f.enqueue_one("send").jobs[0].id;
  CHECK(f.fail(l, 'f', 0.0).what == finish_outcome::retried_now);
  CHECK(ids_of(f.lease(5)) == std::vector<std::string>{other, id});
}

TEST_CASE("fail without retry fails the job for good on its first attempt") {
  fixture f;
  auto id = f.enqueue_one("send").jobs[0].id;
  auto l = f.lease(1).jobs.at(0);
  CHECK(f.fail(l, 'F').what == finish_outcome::failed);
  CHECK(f.job(id).state == "failed");
}

TEST_CASE("an expired lease puts the job back in front; max_stalled stalls fail it for good") {
  fixture f;
  f.policy.max_stalled = 2;
  f.policy.max_attempts = 10;
  auto id = f.enqueue_one("send").jobs[0].id;
  auto l1 = f.lease(1, {}, 1000).jobs.at(0);
  auto later = f.enqueue_one("send").jobs[0].id;
  f.now += 999;
  CHECK(f.tick().requeued == 0);
  f.now += 1;
  auto t = f.tick();
  CHECK(t.requeued == 1);
  CHECK(f.job(id).state == "waiting");
  CHECK(f.job(id).stalls == 1);
  CHECK(f.complete(l1).what == finish_outcome::lost); // the stalled worker's token is dead
  auto l2 = f.lease(1, {}, 1000).jobs.at(0);
  CHECK(l2.id == id); // in front of the job enqueued after it
  CHECK(l2.attempt == 2);
  f.now += 1000;
  t = f.tick();
  CHECK(t.stalled_failed == 1);
  auto rec = f.job(id);
  CHECK(rec.state == "failed");
  CHECK(rec.last_error == "\"stalled 2 times (max_stalled)\"");
  CHECK(f.lease(5).jobs.at(0).id == later);
}

TEST_CASE("jobs leased together with different lease lengths each stall at their own expiry") {
  fixture f;
  model::job_spec quick, slow;
  quick.type = slow.type = "t";
  slow.lease_ms = 5000;
  f.enqueue({quick, slow});
  auto l = f.lease(2, {}, 1000);
  REQUIRE(l.jobs.size() == 2);
  CHECK(l.jobs[1].expires_ms == f.now + 5000);
  f.now += 1000;
  CHECK(f.tick().requeued == 1);
  CHECK(f.job(l.jobs[0].id).state == "waiting");
  CHECK(f.job(l.jobs[1].id).state == "active");
  CHECK(f.counts().active == 1);
  f.now += 3999;
  CHECK(f.tick().requeued == 0);
  f.now += 1;
  CHECK(f.tick().requeued == 1);
  CHECK(f.counts().active == 0);
  CHECK(f.counts().waiting == 2);
}

TEST_CASE("extend moves a held lease's expiry and refuses a lost one") {
  fixture f;
  f.enqueue_one("send");
  auto l = f.lease(1, {}, 1000).jobs.at(0);
  f.now += 900;
  auto ext = f.wait<queue::extend_result>([&](auto done) {
    f.store->extend(0, f.q, {{l.id, l.token, 5000}, {l.id, "bad", 5000}}, f.now, done);
  });
  REQUIRE(ext.expires_ms.size() == 2);
  CHECK(ext.expires_ms[0] == f.now + 5000);
  CHECK(ext.expires_ms[1] == -1);
  f.now += 4000;
  CHECK(f.tick().requeued == 0);
  f.now += 1000;
  CHECK(f.tick().requeued == 1);
}

TEST_CASE("release gives leases back without counting their attempt") {
  fixture f;
  auto id = f.enqueue_one("send").jobs[0].id;
  auto l = f.lease(1).jobs.at(0);
  auto r = f.wait<std::pair<queue::outcome_base, std::int64_t>>([&](auto done) {
    f.store->release(0, f.q, {{l.id, l.token}}, f.now, done);
  });
  CHECK(r.second == 1);
  auto again = f.lease(1).jobs.at(0);
  CHECK(again.id == id);
  CHECK(again.attempt == 1);
}

TEST_CASE("finished jobs are kept by count and by age") {
  fixture f;
  f.policy.keep_completed = 2;
  f.policy.keep_age_s = 60;
  std::vector<std::string> ids;
  for (int i = 0; i < 4; ++i) {
    ids.push_back(f.enqueue_one("t").jobs[0].id);
    f.now += 1;
    f.complete(f.lease(1).jobs.at(0));
  }
  CHECK(f.counts().completed == 2);
  CHECK(f.job(ids[0]).error == queue::errc::not_found);
  CHECK(f.job(ids[3]).state == "completed");
  f.now += 61000;
  CHECK(f.tick().trimmed == 2);
  CHECK(f.counts().completed == 0);
}

TEST_CASE("retry puts a failed job back; delete refuses an active job") {
  fixture f;
  auto id = f.enqueue_one("t").jobs[0].id;
  auto l = f.lease(1).jobs.at(0);
  auto del = f.wait<queue::outcome_base>([&](auto done) { f.store->remove(0, f.q, id, done); });
  CHECK(del.error == queue::errc::conflict);
  f.fail(l, 'F');
  auto retried =
      f.wait<queue::outcome_base>([&](auto done) { f.store->retry(0, f.q, id, f.now, done); });
  CHECK(retried.ok());
  auto again = f.lease(1).jobs.at(0);
  CHECK(again.id == id);
  CHECK(again.attempt == 1);
  auto twice =
      f.wait<queue::outcome_base>([&](auto done) { f.store->retry(0, f.q, id, f.now, done); });
  CHECK(twice.error == queue::errc::conflict);
  f.complete(again);
  del = f.wait<queue::outcome_base>([&](auto done) { f.store->remove(0, f.q, id, done); });
  CHECK(del.ok());
  CHECK(f.job(id).error == queue::errc::not_found);
  auto missing = f.wait<queue::outcome_base>([&](auto done) { f.store->remove(0, f.q, id, done); });
  CHECK(missing.error == queue::errc::not_found);
}

TEST_CASE("a paused queue leases nothing until resumed") {
  fixture f;
  f.enqueue_one("t");
  f.wait<queue::outcome_base>([&](auto done) { f.store->set_paused(0, f.q, true, done); });
  auto l = f.lease(1);
  CHECK(l.paused);
  CHECK(l.jobs.empty());
  CHECK(f.counts().paused);
  f.wait<queue::outcome_base>([&](auto done) { f.store->set_paused(0, f.q, false, done); });
  CHECK(f.lease(1).jobs.size() == 1);
}

TEST_CASE("a schedule fence enqueues once per period") {
  fixture f;
  model::job_spec j;
  j.type = "close_inactive_tickets";
  CHECK(f.enqueue({j}, queue::schedule_fence{"hourly", 7}).ok());
  CHECK(f.enqueue({j}, queue::schedule_fence{"hourly", 7}).error == queue::errc::fenced);
  CHECK(f.enqueue({j}, queue::schedule_fence{"hourly", 6}).error == queue::errc::fenced);
  CHECK(f.enqueue({j}, queue::schedule_fence{"hourly", 8}).ok());
  CHECK(f.counts().waiting == 2);
}

TEST_CASE("the queue registry refuses names past max_queues") {
  fixture f;
  auto reg = [&](std::string q, std::int64_t max) {
    return f.wait<queue::outcome_base>(
        [&](auto done) { f.store->register_queue(0, q, max, done); });
  };
  CHECK(reg("a", 2).ok());
  CHECK(reg("b", 2).ok());
  CHECK(reg("a", 2).ok());
  CHECK(reg("c", 2).error == queue::errc::too_many_queues);
  auto names = f.wait<std::pair<queue::outcome_base, std::vector<std::string>>>(
      [&](auto done) { f.store->queue_names(0, done); });
  CHECK(names.second == std::vector<std::string>{"a", "b"});
}
