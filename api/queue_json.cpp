// Rendering of the queue API's answers (see queue_json.hpp).
#include "api/queue_json.hpp"

#include "model/queue.hpp"
#include "model/session.hpp"

namespace sessiond::api {

namespace {

using json = nlohmann::json;

/// Parses JSON text that Redis holds (written by sessiond); null when it does not parse.
json stored_json(const std::string& text) {
  if (text.empty())
    return nullptr;
  auto j = json::parse(text, nullptr, false);
  return j.is_discarded() ? json(nullptr) : j;
}

json time_or_null(const std::optional<std::int64_t>& ms) {
  return ms ? json(model::rfc3339_ms(*ms)) : json(nullptr);
}

/// The stored history, its times turned from ms into RFC 3339.
json history_json(const std::string& text) {
  auto h = stored_json(text);
  if (!h.is_array())
    return json::array();
  for (auto& entry : h)
    for (const char* k : {"started_at", "ended_at"})
      if (entry.contains(k) && entry[k].is_number_integer())
        entry[k] = model::rfc3339_ms(entry[k].get<std::int64_t>());
  return h;
}

} // namespace

std::string enqueued_json(const queue::enqueued& j) {
  json out{{"id", j.id}, {"state", j.state}};
  if (!j.created)
    out["deduplicated"] = true;
  return out.dump();
}

std::string enqueued_batch_json(const queue::enqueue_result& r) {
  json ids = json::array(), states = json::array();
  for (const auto& j : r.jobs) {
    ids.push_back(j.id);
    states.push_back(j.state);
  }
  return json{{"ids", ids}, {"states", states}}.dump();
}

std::string leased_json(const queue::lease_result& r) {
  std::string out = "{\"jobs\":[";
  for (std::size_t i = 0; i < r.jobs.size(); ++i) {
    const auto& j = r.jobs[i];
    if (i > 0)
      out += ',';
    out += "{\"id\":" + model::json_quote(j.id) + ",\"type\":" + model::json_quote(j.type) +
           ",\"payload\":" + (j.payload.empty() ? std::string("{}") : j.payload) +
           ",\"attempt\":" + std::to_string(j.attempt) +
           ",\"lease_token\":" + model::json_quote(j.token) + ",\"lease_expires_at\":\"" +
           model::rfc3339_ms(j.expires_ms) + "\"}";
  }
  return out + "]}";
}

std::string completed_batch_json(const std::vector<queue::finish_entry>& entries,
                                 const queue::finish_result& r) {
  json completed = json::array(), lost = json::array();
  for (std::size_t i = 0; i < entries.size() && i < r.jobs.size(); ++i)
    (r.jobs[i].what == queue::finish_outcome::completed ? completed : lost)
        .push_back(entries[i].id);
  return json{{"completed", completed}, {"lost", lost}}.dump();
}

std::string extended_json(std::int64_t expires_ms, std::int64_t lease_ms) {
  return json{{"lease_expires_at", model::rfc3339_ms(expires_ms)}, {"lease_ms", lease_ms}}.dump();
}

std::string job_json(const std::string& queue, const queue::job_record& j) {
  json out{
      {"id", j.id},
      {"queue", queue},
      {"type", j.type},
      {"state", j.state},
      {"payload", stored_json(j.payload)},
      {"priority", j.priority},
      {"attempts", j.attempts},
      {"max_attempts", j.max_attempts ? json(*j.max_attempts) : json(nullptr)},
      {"stalls", j.stalls},
      {"created_at", model::rfc3339_ms(j.created_ms)},
      {"ready_at", j.state == "waiting" ? json(model::rfc3339_ms(j.ready_ms)) : json(nullptr)},
      {"due_at", j.state == "delayed" ? time_or_null(j.due_ms) : json(nullptr)},
      {"lease_expires_at", j.state == "active" ? time_or_null(j.lease_expires_ms) : json(nullptr)},
      {"finished_at",
       j.state == "completed" || j.state == "failed" ? time_or_null(j.finished_ms) : json(nullptr)},
      {"dedup_key", j.dedup_key.empty() ? json(nullptr) : json(j.dedup_key)},
      {"lease_ms", j.lease_ms ? json(*j.lease_ms) : json(nullptr)},
      {"result", stored_json(j.result)},
      {"error", stored_json(j.last_error)},
      {"history", history_json(j.history)}};
  return out.dump();
}

json queue_json(const std::string& queue, const queue::queue_counts& c, json settings,
                std::int64_t now_ms) {
  json types = json::object();
  for (const auto& [t, n] : c.waiting_by_type)
    types[t] = n;
  auto oldest_ms =
      c.oldest_ready_ms < 0 ? 0 : std::max<std::int64_t>(0, now_ms - c.oldest_ready_ms);
  // BullMQ's convention: while a queue is paused its waiting jobs count as "paused".
  return {{"name", queue},
          {"waiting", c.paused ? 0 : c.waiting},
          {"delayed", c.delayed},
          {"active", c.active},
          {"completed", c.completed},
          {"failed", c.failed},
          {"paused", c.paused ? c.waiting : 0},
          {"is_paused", c.paused},
          {"oldest_waiting_age_ms", oldest_ms},
          {"waiting_by_type", types},
          {"settings", std::move(settings)}};
}

} // namespace sessiond::api
