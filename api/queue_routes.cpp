// HTTP API v1 routes of the job queue (see queue_routes.hpp and docs/queue.md).
#include "api/queue_routes.hpp"

#include "api/answers.hpp"
#include "api/queue_json.hpp"

#include <nlohmann/json.hpp>

#include <vector>

namespace sessiond::api {

namespace {

using json = nlohmann::json;

constexpr std::string_view queues_path = "/v1/queues";
constexpr auto register_every = std::chrono::seconds(60);

void send_input_error(const http::responder_ptr& res, const model::input_error& e) {
  res->send(http::problem(e.status, e.type, e.title, e.detail));
}

/// The answer to a store failure other than the ones a route handles itself.
void send_store_error(const http::responder_ptr& res, const queue::outcome_base& r,
                      std::int64_t retry_after_s, queue::queue_metrics* meters = nullptr) {
  if (r.error == queue::errc::redis && meters)
    meters->redis_failures().Increment();
  switch (r.error) {
  case queue::errc::not_found:
    return send_problem(res, 404, "job-not-found", "Job not found", r.detail);
  case queue::errc::conflict:
    return send_problem(res, 409, "job-state-conflict", "Job state conflict", r.detail);
  case queue::errc::too_many_queues:
    return send_problem(res, 422, "too-many-queues", "Too many queues", r.detail);
  case queue::errc::too_many_types:
    return send_problem(res, 422, "too-many-types", "Too many job types waiting", r.detail);
  case queue::errc::full:
    return send_problem(res, 429, "queue-full", "Queue full", r.detail, retry_after_s);
  case queue::errc::undecryptable:
    return send_problem(res, 500, "undecryptable", "Stored value does not decrypt", r.detail);
  default:
    return send_problem(res, 503, "unavailable", "Service unavailable", r.detail, retry_after_s);
  }
}

void lease_lost(const http::responder_ptr& res, const std::string& id) {
  send_problem(res, 409, "lease-lost", "Lease lost",
               "the lease on job " + id +
                   " is no longer held: it expired, another worker holds it, or the job finished");
}

/// Decrements the in-flight count when the last copy goes (the request was answered).
struct ticket {
  std::atomic<std::int64_t>* n;
  explicit ticket(std::atomic<std::int64_t>* count) : n(count) {}
  ~ticket() { n->fetch_sub(1); }
  ticket(const ticket&) = delete;
  ticket& operator=(const ticket&) = delete;
};

} // namespace

queue_routes::queue_routes(queue_api_env env) : env_(std::move(env)) {}

std::size_t queue_routes::hint() const {
  return env_.store->local_hint(0);
}

bool queue_routes::handle(std::string_view path, http::request& req,
                          const http::responder_ptr& res_in) {
  if (path.substr(0, queues_path.size()) != queues_path ||
      (path.size() > queues_path.size() && path[queues_path.size()] != '/'))
    return false;
  if (in_flight_.fetch_add(1) >= env_.max_in_flight) {
    in_flight_.fetch_sub(1);
    env_.meters->overload_in_flight().Increment();
    send_problem(res_in, 503, "overloaded", "Too many requests in flight",
                 "this node has queues.max_in_flight = " + std::to_string(env_.max_in_flight) +
                     " queue requests in flight",
                 env_.retry_after_s);
    return true;
  }
  // The responder keeps the ticket until the answer is sent (or the responder is dropped).
  auto t = std::make_shared<ticket>(&in_flight_);
  struct ticketed : http::responder {
    http::responder_ptr inner;
    std::shared_ptr<ticket> t;
    void send(http::response&& r) override {
      inner->send(std::move(r));
      t.reset();
    }
  };
  auto wrapped = std::make_shared<ticketed>();
  wrapped->inner = res_in;
  wrapped->t = t;
  http::responder_ptr res = wrapped;

  // An answer sent inline can end the request (the server reads the next one on this
  // connection and frees this one), and the chains below still compare the path's segments
  // after post() answered 405 or 415: they must not point into the request.
  const std::string owned_path(path);
  path = owned_path;
  auto rest = path.substr(queues_path.size());
  if (rest.empty() || rest == "/") {
    if (req.verb != http::method::get)
      return method_not_allowed(res, "GET"), true;
    return list_queues(res), true;
  }
  auto parts = segments(rest.substr(1));
  std::string q(parts[0]);
  if (!model::valid_queue_name(q))
    return send_problem(res, 400, "invalid-queue-name", "Invalid queue name",
                        "queue names must match [A-Za-z0-9._:-]{1,64}"),
           true;
  auto post = [&]() {
    if (req.verb == http::method::post)
      return require_json(req, res);
    method_not_allowed(res, "POST");
    return false;
  };
  if (parts.size() == 1) {
    if (req.verb != http::method::get)
      return method_not_allowed(res, "GET"), true;
    return queue_info(q, res), true;
  }
  auto p1 = parts[1];
  if (parts.size() == 2) {
    if (p1 == "jobs" && post())
      enqueue(q, req, res, false);
    else if (p1 == "jobs:batch" && post())
      enqueue(q, req, res, true);
    else if (p1 == "jobs:complete" && post())
      complete_batch(q, req, res);
    else if (p1 == "lease" && post())
      lease(q, req, res);
    else if ((p1 == "pause" || p1 == "resume") && post())
      pause(q, p1 == "pause", res);
    else if (p1 != "jobs" && p1 != "jobs:batch" && p1 != "jobs:complete" && p1 != "lease" &&
             p1 != "pause" && p1 != "resume")
      send_problem(res, 404, "no-route", "Not found", "no route for " + std::string(path));
    return true;
  }
  if (p1 != "jobs" || parts.size() > 4)
    return send_problem(res, 404, "no-route", "Not found", "no route for " + std::string(path)),
           true;
  std::string id(parts[2]);
  if (!model::valid_job_id(id))
    return send_problem(res, 400, "invalid-job-id", "Invalid job id",
                        "job ids are decimal numbers as the queue handed them out"),
           true;
  if (parts.size() == 3) {
    if (req.verb == http::method::get)
      job(q, id, res);
    else if (req.verb == http::method::del)
      remove(q, id, res);
    else
      method_not_allowed(res, "GET, DELETE");
    return true;
  }
  auto action = parts[3];
  if (action == "complete" && post())
    report(q, id, 'c', req, res);
  else if (action == "fail" && post())
    report(q, id, 'f', req, res);
  else if (action == "extend" && post())
    extend(q, id, req, res);
  else if (action == "retry" && post())
    retry(q, id, res);
  else if (action != "complete" && action != "fail" && action != "extend" && action != "retry")
    send_problem(res, 404, "no-route", "Not found", "no route for " + std::string(path));
  return true;
}

void queue_routes::registered(const std::string& q, const http::responder_ptr& res,
                              std::function<void()> then) {
  auto now = std::chrono::steady_clock::now();
  {
    std::lock_guard<std::mutex> guard{known_mtx_};
    auto it = known_.find(q);
    if (it != known_.end() && now - it->second < register_every)
      return then();
  }
  env_.store->register_queue(hint(), q, env_.max_queues,
                             [this, q, res, then = std::move(then), now,
                              retry = env_.retry_after_s](queue::outcome_base&& r) {
                               if (!r.ok())
                                 return send_store_error(res, r, retry, env_.meters);
                               bool first = false;
                               {
                                 std::lock_guard<std::mutex> guard{known_mtx_};
                                 first = known_.find(q) == known_.end();
                                 known_[q] = now;
                               }
                               if (first && env_.on_registered)
                                 env_.on_registered(q);
                               then();
                             });
}

void queue_routes::enqueue(const std::string& q, http::request& req, const http::responder_ptr& res,
                           bool batch) {
  std::vector<model::job_spec> jobs(batch ? 0 : 1);
  auto err = batch ? model::parse_job_batch(req.body, env_.limits, jobs)
                   : model::parse_job_spec(req.body, env_.limits, jobs[0]);
  if (err)
    return send_input_error(res, *err);
  auto& m = env_.meters->of(q);
  if (auto why = env_.memory_refusal ? env_.memory_refusal() : std::string(); !why.empty()) {
    m.rejected_memory.Increment();
    return send_problem(res, 503, "redis-memory", "Redis memory nearly full", why,
                        env_.retry_after_s);
  }
  auto run = [this, q, res, batch, jobs = std::move(jobs), &m]() {
    auto policy = env_.policy(q);
    env_.store->enqueue(hint(), q, jobs, policy, env_.clock->now_ms(), std::nullopt,
                        [this, q, res, batch, &m, jobs](queue::enqueue_result&& r) {
                          if (r.error == queue::errc::full)
                            m.rejected_full.Increment();
                          if (!r.ok())
                            return send_store_error(res, r, env_.retry_after_s, env_.meters);
                          std::int64_t created = 0, due = 0;
                          bool waiting = false;
                          for (std::size_t i = 0; i < r.jobs.size(); ++i) {
                            if (!r.jobs[i].created)
                              continue;
                            ++created;
                            if (jobs[i].delay_ms > 0)
                              due = due == 0 ? jobs[i].delay_ms : std::min(due, jobs[i].delay_ms);
                            else
                              waiting = true;
                          }
                          m.enqueued.Increment(static_cast<double>(created));
                          if (created > 0 && env_.on_enqueued)
                            env_.on_enqueued(q, due > 0 ? env_.clock->now_ms() + due : 0);
                          if (waiting)
                            env_.waiters->notify(q);
                          if (batch)
                            return send_json(res, 201, enqueued_batch_json(r));
                          const auto& j = r.jobs.at(0);
                          send_json(res, j.created ? 201 : 200, enqueued_json(j),
                                    j.created ? "/v1/queues/" + q + "/jobs/" + j.id
                                              : std::string());
                        });
  };
  registered(q, res, std::move(run));
}

void queue_routes::lease(const std::string& q, http::request& req, const http::responder_ptr& res) {
  model::lease_request lr;
  if (auto err = model::parse_lease_request(req.body, env_.limits, lr))
    return send_input_error(res, *err);
  auto policy = env_.policy(q);
  auto lease_ms = lr.lease_ms.value_or(policy.lease_ms);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(lr.wait_ms);
  auto& m = env_.meters->of(q);
  // One try; `answered(bool)` tells a parked request whether it was answered now.
  auto attempt = [this, q, lr, lease_ms, res, &m](std::function<void(bool)> answered, bool last) {
    env_.store->lease(
        hint(), q, lr.max, lease_ms, lr.types, queue::token_prefix(), env_.clock->now_ms(),
        [this, res, &m, answered = std::move(answered), last](queue::lease_result&& r) {
          if (!r.ok()) {
            send_store_error(res, r, env_.retry_after_s, env_.meters);
            return answered(true);
          }
          if (r.jobs.empty() && !last)
            return answered(false);
          auto now = env_.clock->now_ms();
          for (const auto& j : r.jobs)
            m.wait.Observe(static_cast<double>(std::max<std::int64_t>(0, now - j.ready_ms)) /
                           1000.0);
          m.leased.Increment(static_cast<double>(r.jobs.size()));
          send_json(res, 200, leased_json(r));
          answered(true);
        });
  };
  if (lr.wait_ms == 0)
    return attempt([](bool) {}, true);
  attempt(
      [this, q, deadline, attempt, res](bool answered) {
        if (answered)
          return;
        auto parked = env_.waiters->park(
            q, deadline,
            [attempt](std::function<void(bool)> done) { attempt(std::move(done), false); },
            [res] { send_json(res, 200, "{\"jobs\":[]}"); });
        if (!parked)
          env_.meters->overload_waiters().Increment(),
              send_problem(res, 503, "too-many-waiters", "Too many parked lease requests",
                           "this node holds queues.max_waiters long-poll lease requests already; "
                           "retry, or lease with a shorter wait_ms",
                           env_.retry_after_s);
      },
      false);
}

void queue_routes::report(const std::string& q, const std::string& id, char kind,
                          http::request& req, const http::responder_ptr& res) {
  model::job_report rep;
  auto err = kind == 'c' ? model::parse_complete_body(req.body, env_.limits, rep)
                         : model::parse_fail_body(req.body, env_.limits, rep);
  if (err)
    return send_input_error(res, *err);
  queue::finish_entry e{id, rep.lease_token, kind, kind == 'c' ? rep.result : rep.error,
                        queue::unit_random()};
  if (kind == 'f' && !rep.retry)
    e.kind = 'F';
  auto& m = env_.meters->of(q);
  env_.store->finish(hint(), q, {e}, env_.policy(q), env_.clock->now_ms(),
                     [this, id, res, &m](queue::finish_result&& r) {
                       if (!r.ok())
                         return send_store_error(res, r, env_.retry_after_s, env_.meters);
                       const auto& f = r.jobs.at(0);
                       queue::record_finish(m, f, env_.clock->now_ms());
                       if (f.what == queue::finish_outcome::not_found)
                         return send_problem(res, 404, "job-not-found", "Job not found",
                                             "no job " + id + " in this queue");
                       if (f.what == queue::finish_outcome::lost)
                         return lease_lost(res, id);
                       no_content(res);
                     });
}

void queue_routes::complete_batch(const std::string& q, http::request& req,
                                  const http::responder_ptr& res) {
  std::vector<model::job_report> reps;
  if (auto err = model::parse_complete_batch(req.body, env_.limits, reps))
    return send_input_error(res, *err);
  std::vector<queue::finish_entry> entries;
  entries.reserve(reps.size());
  for (auto& r : reps)
    entries.push_back({r.id, r.lease_token, 'c', r.result, 0.5});
  auto& m = env_.meters->of(q);
  env_.store->finish(hint(), q, entries, env_.policy(q), env_.clock->now_ms(),
                     [this, res, &m, entries](queue::finish_result&& r) {
                       if (!r.ok())
                         return send_store_error(res, r, env_.retry_after_s, env_.meters);
                       auto now = env_.clock->now_ms();
                       for (const auto& f : r.jobs)
                         queue::record_finish(m, f, now);
                       send_json(res, 200, completed_batch_json(entries, r));
                     });
}

void queue_routes::extend(const std::string& q, const std::string& id, http::request& req,
                          const http::responder_ptr& res) {
  std::string token;
  std::int64_t lease_ms = 0;
  if (auto err = model::parse_extend_body(req.body, env_.limits, token, lease_ms))
    return send_input_error(res, *err);
  env_.store->extend(hint(), q, {{id, token, lease_ms}}, env_.clock->now_ms(),
                     [this, id, res, lease_ms](queue::extend_result&& r) {
                       if (!r.ok())
                         return send_store_error(res, r, env_.retry_after_s, env_.meters);
                       if (r.expires_ms.empty() || r.expires_ms[0] < 0)
                         return lease_lost(res, id);
                       send_json(res, 200, extended_json(r.expires_ms[0], lease_ms));
                     });
}

void queue_routes::job(const std::string& q, const std::string& id,
                       const http::responder_ptr& res) {
  env_.store->job(hint(), q, id, [this, q, res](queue::job_record&& r) {
    if (!r.ok())
      return send_store_error(res, r, env_.retry_after_s, env_.meters);
    send_json(res, 200, job_json(q, r));
  });
}

void queue_routes::retry(const std::string& q, const std::string& id,
                         const http::responder_ptr& res) {
  env_.store->retry(hint(), q, id, env_.clock->now_ms(), [this, q, res](queue::outcome_base&& r) {
    if (!r.ok())
      return send_store_error(res, r, env_.retry_after_s, env_.meters);
    env_.waiters->notify(q);
    if (env_.on_enqueued)
      env_.on_enqueued(q, 0);
    no_content(res);
  });
}

void queue_routes::remove(const std::string& q, const std::string& id,
                          const http::responder_ptr& res) {
  env_.store->remove(hint(), q, id, [this, res](queue::outcome_base&& r) {
    if (!r.ok())
      return send_store_error(res, r, env_.retry_after_s, env_.meters);
    no_content(res);
  });
}

void queue_routes::pause(const std::string& q, bool paused, const http::responder_ptr& res) {
  auto run = [this, q, paused, res] {
    env_.store->set_paused(hint(), q, paused, [this, q, paused, res](queue::outcome_base&& r) {
      if (!r.ok())
        return send_store_error(res, r, env_.retry_after_s, env_.meters);
      if (!paused) {
        env_.waiters->notify(q);
        if (env_.on_resumed)
          env_.on_resumed(q);
      }
      no_content(res);
    });
  };
  registered(q, res, std::move(run));
}

void queue_routes::queue_info(const std::string& q, const http::responder_ptr& res) {
  env_.store->counts(hint(), q, [this, q, res](queue::queue_counts&& c) {
    if (!c.ok())
      return send_store_error(res, c, env_.retry_after_s, env_.meters);
    send_json(res, 200, queue_json(q, c, env_.settings_json(q), env_.clock->now_ms()).dump());
  });
}

void queue_routes::list_queues(const http::responder_ptr& res) {
  env_.store->queue_names(
      hint(), [this, res](std::pair<queue::outcome_base, std::vector<std::string>>&& names) {
        if (!names.first.ok())
          return send_store_error(res, names.first, env_.retry_after_s, env_.meters);
        // Counts of every queue asked at once; the last answer sends the list.
        struct gather {
          std::mutex mtx;
          std::vector<json> queues;
          std::size_t left = 0;
          bool failed = false;
        };
        auto g = std::make_shared<gather>();
        g->queues.resize(names.second.size());
        g->left = names.second.size();
        if (g->left == 0)
          return send_json(res, 200, "{\"queues\":[]}");
        for (std::size_t i = 0; i < names.second.size(); ++i) {
          auto q = names.second[i];
          env_.store->counts(hint(), q, [this, g, i, q, res](queue::queue_counts&& c) {
            std::lock_guard<std::mutex> guard{g->mtx};
            if (!c.ok() && !g->failed) {
              g->failed = true;
              send_store_error(res, c, env_.retry_after_s, env_.meters);
            }
            if (c.ok())
              g->queues[i] = queue_json(q, c, env_.settings_json(q), env_.clock->now_ms());
            if (--g->left == 0 && !g->failed)
              send_json(res, 200, json{{"queues", g->queues}}.dump());
          });
        }
      });
}

} // namespace sessiond::api
