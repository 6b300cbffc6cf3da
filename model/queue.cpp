// The job queue's request rules, retry backoff, handler circuit and schedule periods.
#include "model/queue.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <initializer_list>

namespace sessiond::model {

namespace {

using json = nlohmann::json;

constexpr std::int64_t day_ms = 86400000;

bool name_char(char ch) {
  return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
         ch == '.' || ch == '_' || ch == ':' || ch == '-';
}

input_error bad(std::string detail) {
  return {400, "urn:sessiond:problem:invalid-body", "Invalid request body", std::move(detail)};
}

/// Parses a request body into `doc`; the error when it is not JSON, nests too deeply or is not
/// an object.
std::optional<input_error> parse_object(std::string_view text, json& doc, const char* expect) {
  if (!json_depth_within(text))
    return input_error{400, "urn:sessiond:problem:invalid-json", "JSON nested too deeply",
                       "the request body nests arrays and objects deeper than " +
                           std::to_string(max_json_depth) + " levels"};
  doc = json::parse(text.begin(), text.end(), nullptr, false);
  if (doc.is_discarded())
    return input_error{400, "urn:sessiond:problem:invalid-json", "Invalid JSON",
                       "the request body is not valid JSON"};
  if (!doc.is_object())
    return bad(std::string("the body must be a JSON object ") + expect);
  return std::nullopt;
}

/// Refuses members other than `allowed`.
std::optional<input_error> only_members(const json& doc, std::initializer_list<const char*> allowed,
                                        const std::string& where) {
  for (auto& item : doc.items()) {
    bool known =
        std::any_of(allowed.begin(), allowed.end(), [&](const char* a) { return item.key() == a; });
    if (!known) {
      std::string list;
      for (const char* a : allowed)
        list += (list.empty() ? "" : ", ") + std::string(a);
      return bad("unknown member \"" + where + item.key() + "\" (allowed: " + list + ")");
    }
  }
  return std::nullopt;
}

/// An optional integer member within [min, max]; absent leaves `out` alone.
std::optional<input_error> int_member(const json& doc, const char* key, std::int64_t min,
                                      std::int64_t max, const std::string& where,
                                      std::optional<std::int64_t>& out) {
  auto it = doc.find(key);
  if (it == doc.end())
    return std::nullopt;
  bool in_range =
      it->is_number_integer() &&
      !(it->is_number_unsigned() && it->get<std::uint64_t>() > static_cast<std::uint64_t>(max));
  if (in_range) {
    auto v = it->get<std::int64_t>();
    in_range = v >= min && v <= max;
  }
  if (!in_range)
    return bad("\"" + where + key + "\" must be an integer from " + std::to_string(min) + " to " +
               std::to_string(max));
  out = it->get<std::int64_t>();
  return std::nullopt;
}

std::optional<input_error> int_member(const json& doc, const char* key, std::int64_t min,
                                      std::int64_t max, const std::string& where,
                                      std::int64_t& out) {
  std::optional<std::int64_t> v;
  if (auto err = int_member(doc, key, min, max, where, v))
    return err;
  if (v)
    out = *v;
  return std::nullopt;
}

/// A required (or optional) string member matching [A-Za-z0-9._:-]{1,64}.
std::optional<input_error> name_member(const json& doc, const char* key, bool required,
                                       const std::string& where, std::string& out) {
  auto it = doc.find(key);
  if (it == doc.end()) {
    if (required)
      return bad("\"" + where + key + "\" is required");
    return std::nullopt;
  }
  if (!it->is_string() || !valid_queue_name(it->get_ref<const std::string&>()))
    return bad("\"" + where + key + "\" must be a string matching [A-Za-z0-9._:-]{1,64}");
  out = it->get<std::string>();
  return std::nullopt;
}

std::optional<input_error> token_member(const json& doc, const std::string& where,
                                        std::string& out) {
  auto it = doc.find("lease_token");
  if (it == doc.end() || !it->is_string() || it->get_ref<const std::string&>().empty() ||
      it->get_ref<const std::string&>().size() > 128)
    return bad("\"" + where + "lease_token\" is required: the string the lease handed out");
  out = it->get<std::string>();
  return std::nullopt;
}

/// "result": any JSON value, stored compact; bounded like a payload.
std::optional<input_error> result_member(const json& doc, const queue_limits& lim,
                                         const std::string& where, std::string& out) {
  auto it = doc.find("result");
  if (it == doc.end() || it->is_null())
    return std::nullopt;
  out = it->dump();
  if (out.size() > lim.max_payload_bytes)
    return input_error{413, "urn:sessiond:problem:result-too-large", "Job result too large",
                       "\"" + where + "result\" is " + std::to_string(out.size()) +
                           " bytes serialized; the limit is " +
                           std::to_string(lim.max_payload_bytes)};
  return std::nullopt;
}

std::optional<input_error> job_from(const json& doc, const queue_limits& lim,
                                    const std::string& where, job_spec& out) {
  if (!doc.is_object())
    return bad("\"" + where.substr(0, where.size() - 1) + "\" must be a JSON object");
  if (auto err = only_members(
          doc, {"type", "payload", "delay_ms", "priority", "max_attempts", "dedup_key", "lease_ms"},
          where))
    return err;
  if (auto err = name_member(doc, "type", true, where, out.type))
    return err;
  auto payload = doc.find("payload");
  if (payload == doc.end() || !payload->is_object())
    return bad("\"" + where + "payload\" is required and must be a JSON object");
  if (auto err = int_member(doc, "delay_ms", 0, lim.max_delay_ms, where, out.delay_ms))
    return err;
  if (auto err =
          int_member(doc, "priority", -lim.max_priority, lim.max_priority, where, out.priority))
    return err;
  if (auto err = int_member(doc, "max_attempts", 1, lim.max_attempts, where, out.max_attempts))
    return err;
  if (auto err = name_member(doc, "dedup_key", false, where, out.dedup_key))
    return err;
  if (auto err =
          int_member(doc, "lease_ms", lim.min_lease_ms, lim.max_lease_ms, where, out.lease_ms))
    return err;
  out.payload = payload->dump();
  if (out.payload.size() > lim.max_payload_bytes)
    return input_error{413, "urn:sessiond:problem:payload-too-large", "Job payload too large",
                       "\"" + where + "payload\" is " + std::to_string(out.payload.size()) +
                           " bytes serialized; the limit is " +
                           std::to_string(lim.max_payload_bytes)};
  return std::nullopt;
}

/// The "jobs" array of a batch body, 1..max_batch long.
std::optional<input_error> batch_array(std::string_view text, const queue_limits& lim,
                                       const char* expect, json& doc, const json*& jobs) {
  if (auto err = parse_object(text, doc, expect))
    return err;
  if (auto err = only_members(doc, {"jobs"}, ""))
    return err;
  auto it = doc.find("jobs");
  if (it == doc.end() || !it->is_array() || it->empty())
    return bad("\"jobs\" is required: an array of 1 to " + std::to_string(lim.max_batch) +
               " objects");
  if (it->size() > lim.max_batch)
    return input_error{413, "urn:sessiond:problem:batch-too-large", "Batch too large",
                       "\"jobs\" holds " + std::to_string(it->size()) + " entries; at most " +
                           std::to_string(lim.max_batch) + " per request"};
  jobs = &*it;
  return std::nullopt;
}

} // namespace

bool valid_queue_name(std::string_view name) {
  return !name.empty() && name.size() <= 64 && std::all_of(name.begin(), name.end(), name_char);
}

bool valid_job_id(std::string_view id) {
  return !id.empty() && id.size() <= 20 && id.front() != '0' &&
         std::all_of(id.begin(), id.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
}

std::optional<input_error> parse_job_spec(std::string_view text, const queue_limits& lim,
                                          job_spec& out) {
  json doc;
  if (auto err = parse_object(text, doc, "with \"type\" and \"payload\""))
    return err;
  return job_from(doc, lim, "", out);
}

std::optional<input_error> parse_job_batch(std::string_view text, const queue_limits& lim,
                                           std::vector<job_spec>& out) {
  json doc;
  const json* jobs = nullptr;
  if (auto err = batch_array(text, lim, "{\"jobs\":[…]}", doc, jobs))
    return err;
  out.clear();
  out.reserve(jobs->size());
  for (std::size_t i = 0; i < jobs->size(); ++i) {
    job_spec spec;
    if (auto err = job_from((*jobs)[i], lim, "jobs[" + std::to_string(i) + "].", spec))
      return err;
    out.push_back(std::move(spec));
  }
  return std::nullopt;
}

std::optional<input_error> parse_lease_request(std::string_view text, const queue_limits& lim,
                                               lease_request& out) {
  json doc = json::object();
  if (!text.empty())
    if (auto err = parse_object(text, doc, "such as {\"max\":10,\"wait_ms\":5000}"))
      return err;
  if (auto err = only_members(doc, {"max", "wait_ms", "lease_ms", "types"}, ""))
    return err;
  if (auto err = int_member(doc, "max", 1, lim.max_lease_jobs, "", out.max))
    return err;
  if (auto err = int_member(doc, "wait_ms", 0, lim.max_wait_ms, "", out.wait_ms))
    return err;
  if (auto err = int_member(doc, "lease_ms", lim.min_lease_ms, lim.max_lease_ms, "", out.lease_ms))
    return err;
  if (auto it = doc.find("types"); it != doc.end()) {
    if (!it->is_array() || it->size() > 100)
      return bad("\"types\" must be an array of at most 100 job types");
    for (auto& t : *it) {
      if (!t.is_string() || !valid_queue_name(t.get_ref<const std::string&>()))
        return bad("\"types\" must hold strings matching [A-Za-z0-9._:-]{1,64}");
      if (std::find(out.types.begin(), out.types.end(), t.get<std::string>()) == out.types.end())
        out.types.push_back(t.get<std::string>());
    }
  }
  return std::nullopt;
}

std::optional<input_error> parse_complete_body(std::string_view text, const queue_limits& lim,
                                               job_report& out) {
  json doc;
  if (auto err = parse_object(text, doc, "with \"lease_token\""))
    return err;
  if (auto err = only_members(doc, {"lease_token", "result"}, ""))
    return err;
  if (auto err = token_member(doc, "", out.lease_token))
    return err;
  return result_member(doc, lim, "", out.result);
}

std::optional<input_error> parse_complete_batch(std::string_view text, const queue_limits& lim,
                                                std::vector<job_report>& out) {
  json doc;
  const json* jobs = nullptr;
  if (auto err = batch_array(text, lim, "{\"jobs\":[{\"id\",\"lease_token\"}…]}", doc, jobs))
    return err;
  out.clear();
  for (std::size_t i = 0; i < jobs->size(); ++i) {
    const auto& j = (*jobs)[i];
    std::string where = "jobs[" + std::to_string(i) + "].";
    if (!j.is_object())
      return bad("\"jobs[" + std::to_string(i) + "]\" must be a JSON object");
    if (auto err = only_members(j, {"id", "lease_token", "result"}, where))
      return err;
    job_report r;
    auto id = j.find("id");
    if (id == j.end() || !id->is_string() || !valid_job_id(id->get_ref<const std::string&>()))
      return bad("\"" + where + "id\" is required: a job id (decimal digits)");
    r.id = id->get<std::string>();
    if (auto err = token_member(j, where, r.lease_token))
      return err;
    if (auto err = result_member(j, lim, where, r.result))
      return err;
    out.push_back(std::move(r));
  }
  return std::nullopt;
}

std::optional<input_error> parse_fail_body(std::string_view text, const queue_limits& lim,
                                           job_report& out) {
  json doc;
  if (auto err = parse_object(text, doc, "with \"lease_token\" and \"error\""))
    return err;
  if (auto err = only_members(doc, {"lease_token", "error", "retry"}, ""))
    return err;
  if (auto err = token_member(doc, "", out.lease_token))
    return err;
  auto e = doc.find("error");
  if (e == doc.end() || !e->is_string())
    return bad("\"error\" is required: a string saying what went wrong");
  out.error = e->get<std::string>();
  if (out.error.size() > lim.max_payload_bytes)
    out.error.resize(lim.max_payload_bytes); // kept, shortened: the job must still fail
  if (auto r = doc.find("retry"); r != doc.end()) {
    if (!r->is_boolean())
      return bad("\"retry\" must be true or false");
    out.retry = r->get<bool>();
  }
  return std::nullopt;
}

std::optional<input_error> parse_extend_body(std::string_view text, const queue_limits& lim,
                                             std::string& token, std::int64_t& lease_ms) {
  json doc;
  if (auto err = parse_object(text, doc, "with \"lease_token\" and \"lease_ms\""))
    return err;
  if (auto err = only_members(doc, {"lease_token", "lease_ms"}, ""))
    return err;
  if (auto err = token_member(doc, "", token))
    return err;
  std::optional<std::int64_t> v;
  if (auto err = int_member(doc, "lease_ms", lim.min_lease_ms, lim.max_lease_ms, "", v))
    return err;
  if (!v)
    return bad("\"lease_ms\" is required: an integer from " + std::to_string(lim.min_lease_ms) +
               " to " + std::to_string(lim.max_lease_ms));
  lease_ms = *v;
  return std::nullopt;
}

std::int64_t retry_delay_ms(std::int64_t base_ms, std::int64_t max_ms, std::int64_t attempt,
                            double unit_random) {
  std::int64_t cap = std::max<std::int64_t>(base_ms, 0);
  for (std::int64_t i = 1; i < attempt && cap < max_ms; ++i)
    cap *= 2;
  cap = std::min(cap, max_ms);
  double r = std::clamp(unit_random, 0.0, 1.0);
  return std::min(cap, static_cast<std::int64_t>(std::floor(static_cast<double>(cap) * r)));
}

std::int64_t type_circuit::allowance(std::int64_t now_ms, std::int64_t running) {
  if (state_ == state::open && now_ms >= retry_at_ms_)
    state_ = state::half_open;
  switch (state_) {
  case state::closed:
    return -1;
  case state::half_open:
    return std::max<std::int64_t>(0, 1 - running);
  case state::open:
    return 0;
  }
  return 0;
}

void type_circuit::on_success() {
  state_ = state::closed;
  failures_ = 0;
}

void type_circuit::on_failure(std::int64_t now_ms) {
  ++failures_;
  if (state_ == state::half_open || failures_ >= threshold_) {
    state_ = state::open;
    retry_at_ms_ = now_ms + cooldown_ms_;
  }
}

const char* to_string(type_circuit::state s) {
  switch (s) {
  case type_circuit::state::closed:
    return "closed";
  case type_circuit::state::open:
    return "open";
  case type_circuit::state::half_open:
    return "half-open";
  }
  return "unknown";
}

std::int64_t schedule_period(std::int64_t now_ms, std::int64_t every_s, std::int64_t at_minute) {
  if (every_s > 0)
    return now_ms / (every_s * 1000);
  auto shifted = now_ms - at_minute * 60000; // the day's run time becomes midnight
  return shifted >= 0 ? shifted / day_ms : -((-shifted + day_ms - 1) / day_ms);
}

std::int64_t schedule_next_ms(std::int64_t period, std::int64_t every_s, std::int64_t at_minute) {
  if (every_s > 0)
    return (period + 1) * every_s * 1000;
  return (period + 1) * day_ms + at_minute * 60000;
}

std::string json_quote(std::string_view text) {
  return json(std::string(text)).dump(-1, ' ', false, json::error_handler_t::replace);
}

} // namespace sessiond::model
