// queue_worker: one job at a time. noop completes at once; webhook POSTs the job as JSON with an
// Idempotency-Key (the job id) and waits for the answer on the HTTP client's thread, which comes
// back to this actor as a webhook_done message.
#include "actors/queue/queue_worker.hpp"

#include "model/queue.hpp"

#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <nlohmann/json.hpp>

namespace sessiond::actors {

using messages::job_done;
using messages::run_job;
using messages::webhook_done;
using self_ptr = messages::queue_worker_actor::stateful_pointer<queue_worker_state>;

namespace {

std::string snippet(const std::string& body) {
  constexpr std::size_t max = 200;
  std::string s = body.substr(0, max);
  for (auto& ch : s)
    if (ch == '\n' || ch == '\r')
      ch = ' ';
  return body.size() > max ? s + "…" : s;
}

void call_webhook(self_ptr self, const run_job& job) {
  auto& env = *self->state.env;
  std::string body = "{\"id\":" + model::json_quote(job.job.id) +
                     ",\"queue\":" + model::json_quote(job.queue) +
                     ",\"type\":" + model::json_quote(job.job.type) +
                     ",\"payload\":" + (job.job.payload.empty() ? "{}" : job.job.payload) +
                     ",\"attempt\":" + std::to_string(job.job.attempt) + "}";
  http::outgoing_request req;
  req.url = job.handler.url;
  req.body = std::move(body);
  req.timeout = std::chrono::milliseconds(job.handler.timeout_ms);
  req.headers = {{"Idempotency-Key", job.job.id},
                 {"X-Sessiond-Queue", job.queue},
                 {"X-Sessiond-Attempt", std::to_string(job.job.attempt)}};
  auto handle = caf::actor_cast<messages::queue_worker_actor>(self);
  env.webhooks->request(std::move(req), [handle, id = job.job.id](http::incoming_response&& r) {
    webhook_done w;
    w.id = id;
    if (r.error == http::client_errc::ok) {
      w.status = r.status;
      w.body = std::move(r.body);
      w.content_type = std::move(r.content_type);
    } else {
      w.error = r.detail.empty() ? http::to_string(r.error) : r.detail;
    }
    caf::anon_send(handle, std::move(w));
  });
}

} // namespace

job_done webhook_outcome(const run_job& job, const webhook_done& w, std::size_t max_result_bytes) {
  job_done d{job.job.id, job.job.token, 'c', "", false};
  if (w.status == 0) {
    d.kind = 'f';
    d.value = "webhook call failed: " + w.error;
    d.downstream_failed = true;
  } else if (w.status >= 200 && w.status < 300) {
    if (!w.body.empty() && w.body.size() <= max_result_bytes) {
      auto j = nlohmann::json::parse(w.body, nullptr, false);
      if (!j.is_discarded())
        d.value = j.dump();
    }
  } else if (w.status == 408 || w.status == 429 || w.status >= 500) {
    d.kind = 'f';
    d.value = "webhook answered HTTP " + std::to_string(w.status) + ": " + snippet(w.body);
    d.downstream_failed = true;
  } else {
    d.kind = 'F';
    d.value =
        "webhook answered HTTP " + std::to_string(w.status) + " (not retried): " + snippet(w.body);
  }
  return d;
}

messages::queue_worker_actor::behavior_type queue_worker(self_ptr self,
                                                         std::shared_ptr<const queue_env> env,
                                                         messages::queue_manager_actor manager) {
  self->state.env = std::move(env);
  self->state.manager = std::move(manager);
  return {
      [=](run_job& job) {
        auto& st = self->state;
        if (job.handler.what == messages::job_handler::kind::noop) {
          self->send(st.manager, job_done{job.job.id, job.job.token, 'c', "", false});
          return;
        }
        st.current = std::move(job);
        call_webhook(self, *st.current);
      },
      [=](webhook_done& w) {
        auto& st = self->state;
        if (!st.current || st.current->job.id != w.id)
          return; // an answer for a job this worker no longer runs
        auto max = static_cast<std::size_t>(st.env->cfg->max_payload_bytes);
        self->send(st.manager, webhook_outcome(*st.current, w, max));
        st.current.reset();
      },
  };
}

} // namespace sessiond::actors
