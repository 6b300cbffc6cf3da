// The job queue's Redis operations: arguments for the scripts in, typed results out.
#include "adapters/queue/store.hpp"

#include "adapters/crypto/keyring.hpp"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <random>

namespace sessiond::queue {

namespace {

std::int64_t to_i64(const redis::reply& r) {
  if (r.type == redis::reply::kind::integer)
    return r.integer;
  // Scores come back as text; the queue's are integral (an integral score may print as "12.0").
  std::int64_t v = 0;
  auto [ptr, ec] = std::from_chars(r.str.data(), r.str.data() + r.str.size(), v);
  (void)ptr;
  return ec == std::errc{} ? v : 0;
}

/// The outcome of a failed call: transport errors and error replies as errc::redis.
outcome_base redis_failure(redis::errc e, const redis::reply& r) {
  outcome_base out;
  out.error = errc::redis;
  if (e != redis::errc::ok)
    out.detail = std::string("Redis: ") + redis::to_string(e);
  else if (r.str.rfind("OOM", 0) == 0)
    out.detail = "Redis is at its maxmemory and refuses writes; nothing was changed";
  else
    out.detail = "Redis: " + r.str;
  return out;
}

/// True (and `out` set from the failure) when the call failed or did not answer an array.
template <class Result>
bool failed(redis::errc e, const redis::reply& r, Result& out) {
  if (e == redis::errc::ok && !r.is_error() && r.type == redis::reply::kind::array)
    return false;
  if (e == redis::errc::ok && !r.is_error()) {
    out.error = errc::redis;
    out.detail = "Redis: unexpected reply to a queue script";
    return true;
  }
  static_cast<outcome_base&>(out) = redis_failure(e, r);
  return true;
}

const std::string& at(const redis::reply& r, std::size_t i) {
  static const std::string empty;
  return i < r.elements.size() ? r.elements[i].str : empty;
}

std::int64_t int_at(const redis::reply& r, std::size_t i) {
  return i < r.elements.size() ? to_i64(r.elements[i]) : 0;
}

std::string opt(const std::optional<std::int64_t>& v) {
  return v ? std::to_string(*v) : std::string();
}

enqueue_result parse_enqueue(const redis::reply& r) {
  enqueue_result out;
  auto code = int_at(r, 0);
  if (code == code_full) {
    out.error = errc::full;
    out.unfinished = int_at(r, 1);
  } else if (code == code_too_many_types) {
    out.error = errc::too_many_types;
  } else if (code == code_fenced) {
    out.error = errc::fenced;
  } else {
    for (std::size_t i = 1; i + 2 < r.elements.size(); i += 3) {
      auto st = at(r, i + 1);
      out.jobs.push_back({at(r, i),
                          st == "w"   ? "waiting"
                          : st == "d" ? "delayed"
                          : st == "a" ? "active"
                                      : st,
                          int_at(r, i + 2) == 1});
    }
  }
  return out;
}

lease_result parse_lease(const redis::reply& r) {
  lease_result out;
  out.paused = int_at(r, 0) == 1;
  for (std::size_t i = 1; i + 6 < r.elements.size(); i += 7) {
    leased_job j;
    j.id = at(r, i);
    j.type = at(r, i + 1);
    j.payload = at(r, i + 2);
    j.attempt = int_at(r, i + 3);
    j.token = at(r, i + 4);
    j.expires_ms = int_at(r, i + 5);
    j.ready_ms = int_at(r, i + 6);
    out.jobs.push_back(std::move(j));
  }
  return out;
}

finish_outcome outcome_of(const std::string& code) {
  if (code == "c")
    return finish_outcome::completed;
  if (code == "w")
    return finish_outcome::retried_now;
  if (code == "d")
    return finish_outcome::retried_later;
  if (code == "f")
    return finish_outcome::failed;
  if (code == "n")
    return finish_outcome::not_found;
  return finish_outcome::lost;
}

std::optional<std::int64_t> field_int(const std::string& v) {
  if (v.empty())
    return std::nullopt;
  std::int64_t n = 0;
  std::from_chars(v.data(), v.data() + v.size(), n);
  return n;
}

const char* state_name(const std::string& st) {
  if (st == "w")
    return "waiting";
  if (st == "d")
    return "delayed";
  if (st == "a")
    return "active";
  if (st == "c")
    return "completed";
  if (st == "f")
    return "failed";
  return "unknown";
}

job_record parse_job(const std::string& id, const redis::reply& r) {
  job_record j;
  j.id = id;
  if (r.elements.empty()) {
    static_cast<outcome_base&>(j) = {errc::not_found, "no job " + id + " in this queue"};
    return j;
  }
  for (std::size_t i = 0; i + 1 < r.elements.size(); i += 2) {
    const auto& k = r.elements[i].str;
    const auto& v = r.elements[i + 1].str;
    if (k == "t")
      j.type = v;
    else if (k == "p")
      j.payload = v;
    else if (k == "st")
      j.state = state_name(v);
    else if (k == "ca")
      j.created_ms = field_int(v).value_or(0);
    else if (k == "ra")
      j.ready_ms = field_int(v).value_or(0);
    else if (k == "a")
      j.attempts = field_int(v).value_or(0);
    else if (k == "pr")
      j.priority = field_int(v).value_or(0);
    else if (k == "sc")
      j.stalls = field_int(v).value_or(0);
    else if (k == "ma")
      j.max_attempts = field_int(v);
    else if (k == "lm")
      j.lease_ms = field_int(v);
    else if (k == "du")
      j.due_ms = field_int(v);
    else if (k == "le")
      j.lease_expires_ms = field_int(v);
    else if (k == "ls")
      j.lease_start_ms = field_int(v);
    else if (k == "fa")
      j.finished_ms = field_int(v);
    else if (k == "dk")
      j.dedup_key = v;
    else if (k == "h")
      j.history = "[" + v + "]";
    else if (k == "e")
      j.last_error = v;
    else if (k == "r")
      j.result = v;
  }
  if (j.history.empty())
    j.history = "[]";
  if (j.ready_ms == 0)
    j.ready_ms = j.created_ms;
  return j;
}

} // namespace

const char* to_string(errc e) {
  switch (e) {
  case errc::ok:
    return "ok";
  case errc::full:
    return "queue full";
  case errc::too_many_types:
    return "too many job types waiting";
  case errc::too_many_queues:
    return "too many queues";
  case errc::fenced:
    return "already enqueued for this period";
  case errc::not_found:
    return "job not found";
  case errc::conflict:
    return "job state conflict";
  case errc::redis:
    return "Redis failed";
  case errc::undecryptable:
    return "stored value does not decrypt";
  }
  return "unknown";
}

const char* to_string(finish_outcome o) {
  switch (o) {
  case finish_outcome::completed:
    return "completed";
  case finish_outcome::retried_now:
    return "retried";
  case finish_outcome::retried_later:
    return "delayed";
  case finish_outcome::failed:
    return "failed";
  case finish_outcome::lost:
    return "lost";
  case finish_outcome::not_found:
    return "not found";
  }
  return "unknown";
}

std::string key_base(const std::string& prefix, const std::string& queue) {
  return prefix + "{q:" + queue + "}:";
}

std::string registry_key(const std::string& prefix) {
  return prefix + "{queues}";
}

std::string payload_aad(const std::string& queue, const std::string& type) {
  return "job:" + queue + ":" + type;
}

std::string result_aad(const std::string& queue, const std::string& id) {
  return "job-result:" + queue + ":" + id;
}

std::string token_prefix() {
  thread_local std::mt19937_64 random{std::random_device{}()};
  char buf[24];
  std::snprintf(buf, sizeof buf, "%016llx.", static_cast<unsigned long long>(random()));
  return buf;
}

double unit_random() {
  thread_local std::mt19937_64 random{std::random_device{}()};
  return std::uniform_real_distribution<double>{0.0, 1.0}(random);
}

store::store(redis::client& redis, std::string prefix)
    : redis_(redis), prefix_(std::move(prefix)) {}

std::string store::meta_key(const std::string& queue) const {
  return key_base(prefix_, queue) + "meta";
}

void store::register_queue(std::size_t hint, const std::string& queue, std::int64_t max_queues,
                           done_fn<outcome_base> done) {
  redis_.eval(hint, scripts_.register_queue, {registry_key(prefix_)},
              {queue, std::to_string(max_queues)},
              [done = std::move(done), max_queues](redis::errc e, redis::reply&& r) {
                if (e != redis::errc::ok || r.is_error())
                  return done(redis_failure(e, r));
                if (to_i64(r) == 1)
                  return done(outcome_base{});
                done({errc::too_many_queues, "queues.max_queues = " + std::to_string(max_queues) +
                                                 " queues exist already"});
              });
}

void store::queue_names(std::size_t hint,
                        done_fn<std::pair<outcome_base, std::vector<std::string>>> done) {
  redis_.command(hint, {"SMEMBERS", registry_key(prefix_)},
                 [done = std::move(done)](redis::errc e, redis::reply&& r) {
                   std::pair<outcome_base, std::vector<std::string>> out;
                   if (failed(e, r, out.first))
                     return done(std::move(out));
                   for (auto& el : r.elements)
                     out.second.push_back(std::move(el.str));
                   std::sort(out.second.begin(), out.second.end());
                   done(std::move(out));
                 });
}

void store::enqueue(std::size_t hint, const std::string& queue,
                    const std::vector<model::job_spec>& jobs, const queue_policy& policy,
                    std::int64_t now_ms, const std::optional<schedule_fence>& fence,
                    done_fn<enqueue_result> done) {
  std::vector<std::string> args;
  args.reserve(5 + jobs.size() * 7);
  args.push_back(std::to_string(now_ms));
  args.push_back(std::to_string(policy.max_length));
  args.push_back(fence ? "sch:" + fence->schedule : std::string());
  args.push_back(fence ? std::to_string(fence->period) : std::string());
  args.push_back(std::to_string(jobs.size()));
  auto ring = keys_ != nullptr ? keys_->get() : nullptr;
  for (const auto& j : jobs) {
    args.push_back(j.type);
    args.push_back(ring ? ring->seal(payload_aad(queue, j.type), j.payload) : j.payload);
    args.push_back(std::to_string(j.delay_ms));
    args.push_back(std::to_string(j.priority));
    args.push_back(opt(j.max_attempts));
    args.push_back(j.dedup_key);
    args.push_back(opt(j.lease_ms));
  }
  redis_.eval(hint, scripts_.enqueue, {meta_key(queue)}, std::move(args),
              [done = std::move(done), max = policy.max_length](redis::errc e, redis::reply&& r) {
                enqueue_result out;
                if (failed(e, r, out))
                  return done(std::move(out));
                out = parse_enqueue(r);
                if (out.error == errc::full)
                  out.detail = "the queue holds " + std::to_string(out.unfinished) +
                               " unfinished jobs; its max_length is " + std::to_string(max);
                else if (out.error == errc::too_many_types)
                  out.detail = "jobs of " + std::to_string(max_waiting_types) +
                               " types wait in this queue already; that is the limit";
                done(std::move(out));
              });
}

void store::lease(std::size_t hint, const std::string& queue, std::int64_t max,
                  std::int64_t lease_ms, const std::vector<std::string>& types,
                  const std::string& token_prefix, std::int64_t now_ms,
                  done_fn<lease_result> done) {
  std::vector<std::string> args{std::to_string(now_ms), std::to_string(max),
                                std::to_string(lease_ms), token_prefix,
                                std::to_string(types.size())};
  args.insert(args.end(), types.begin(), types.end());
  redis_.eval(
      hint, scripts_.lease, {meta_key(queue)}, std::move(args),
      [this, hint, queue, now_ms, done = std::move(done)](redis::errc e, redis::reply&& r) mutable {
        lease_result out;
        if (failed(e, r, out))
          return done(std::move(out));
        out = parse_lease(r);
        auto sealed = [](const leased_job& j) { return crypto::is_envelope(j.payload); };
        if (std::none_of(out.jobs.begin(), out.jobs.end(), sealed))
          return done(std::move(out));
        open_leased(hint, queue, now_ms, std::move(out), std::move(done));
      });
}

void store::open_leased(std::size_t hint, const std::string& queue, std::int64_t now_ms,
                        lease_result out, done_fn<lease_result> done) {
  auto ring = keys_ != nullptr ? keys_->get() : nullptr;
  std::vector<finish_entry> refused;
  std::vector<leased_job> usable;
  for (auto& j : out.jobs) {
    if (!crypto::is_envelope(j.payload)) {
      usable.push_back(std::move(j));
      continue;
    }
    auto o = ring ? ring->open(payload_aad(queue, j.type), j.payload)
                  : crypto::open_without_keys(j.payload);
    if (o.code == crypto::errc::ok) {
      j.payload = std::move(o.plaintext);
      usable.push_back(std::move(j));
      continue;
    }
    undecryptable_->fetch_add(1, std::memory_order_relaxed);
    refused.push_back(
        {j.id, j.token, 'F',
         o.code == crypto::errc::key_missing
             ? "sessiond could not decrypt the payload: it is encrypted under key \"" + o.key_id +
                   "\", which is not in encryption.keys_file; failed without "
                   "running (retry the job once the key is back)"
             : "sessiond could not decrypt the payload under key \"" + o.key_id +
                   "\": " + crypto::to_string(o.code) +
                   " (copied from another job, or changed in Redis); failed "
                   "without running",
         0.5});
  }
  out.jobs = std::move(usable);
  // Failed for good in the same order of events a worker's report would take, before the lease
  // answers: keep_* this high trims nothing (the next ordinary report trims to the queue's own).
  queue_policy untrimmed;
  untrimmed.keep_completed = untrimmed.keep_failed = std::int64_t{1} << 50;
  finish(hint, queue, refused, untrimmed, now_ms,
         [out = std::move(out), done = std::move(done)](finish_result&&) mutable {
           done(std::move(out)); // a failed report leaves the leases to expire and stall
         });
}

void store::finish(std::size_t hint, const std::string& queue,
                   const std::vector<finish_entry>& entries, const queue_policy& policy,
                   std::int64_t now_ms, done_fn<finish_result> done) {
  std::vector<std::string> args{std::to_string(now_ms),
                                std::to_string(policy.keep_completed),
                                std::to_string(policy.keep_failed),
                                std::to_string(policy.backoff_ms),
                                std::to_string(policy.max_backoff_ms),
                                std::to_string(policy.max_attempts),
                                std::to_string(entries.size())};
  args.reserve(args.size() + entries.size() * 5);
  auto ring = keys_ != nullptr ? keys_->get() : nullptr;
  char random[32];
  for (const auto& en : entries) {
    args.push_back(en.id);
    args.push_back(en.token);
    args.push_back(std::string(1, en.kind));
    if (en.kind != 'c')
      args.push_back(model::json_quote(en.value));
    else if (ring && !en.value.empty())
      args.push_back(ring->seal(result_aad(queue, en.id), en.value));
    else
      args.push_back(en.value);
    std::snprintf(random, sizeof random, "%.6f", std::clamp(en.random, 0.0, 0.999999));
    args.push_back(random);
  }
  redis_.eval(hint, scripts_.finish, {meta_key(queue)}, std::move(args),
              [done = std::move(done)](redis::errc e, redis::reply&& r) {
                finish_result out;
                if (failed(e, r, out))
                  return done(std::move(out));
                for (std::size_t i = 0; i + 1 < r.elements.size(); i += 2)
                  out.jobs.push_back({outcome_of(at(r, i)), int_at(r, i + 1)});
                done(std::move(out));
              });
}

void store::extend(std::size_t hint, const std::string& queue,
                   const std::vector<extend_entry>& entries, std::int64_t now_ms,
                   done_fn<extend_result> done) {
  std::vector<std::string> args{std::to_string(now_ms), std::to_string(entries.size())};
  for (const auto& en : entries) {
    args.push_back(en.id);
    args.push_back(en.token);
    args.push_back(std::to_string(en.lease_ms));
  }
  redis_.eval(hint, scripts_.extend, {meta_key(queue)}, std::move(args),
              [done = std::move(done)](redis::errc e, redis::reply&& r) {
                extend_result out;
                if (failed(e, r, out))
                  return done(std::move(out));
                for (std::size_t i = 0; i < r.elements.size(); ++i)
                  out.expires_ms.push_back(int_at(r, i));
                done(std::move(out));
              });
}

void store::release(std::size_t hint, const std::string& queue,
                    const std::vector<std::pair<std::string, std::string>>& id_tokens,
                    std::int64_t now_ms, done_fn<std::pair<outcome_base, std::int64_t>> done) {
  std::vector<std::string> args{std::to_string(now_ms), std::to_string(id_tokens.size())};
  for (const auto& [id, token] : id_tokens) {
    args.push_back(id);
    args.push_back(token);
  }
  redis_.eval(hint, scripts_.release, {meta_key(queue)}, std::move(args),
              [done = std::move(done)](redis::errc e, redis::reply&& r) {
                std::pair<outcome_base, std::int64_t> out{{}, 0};
                if (e != redis::errc::ok || r.is_error())
                  out.first = redis_failure(e, r);
                else
                  out.second = to_i64(r);
                done(std::move(out));
              });
}

void store::tick(std::size_t hint, const std::string& queue, const queue_policy& policy,
                 std::int64_t now_ms, done_fn<tick_result> done) {
  redis_.eval(hint, scripts_.tick, {meta_key(queue)},
              {std::to_string(now_ms), std::to_string(policy.max_stalled),
               std::to_string(policy.max_attempts), std::to_string(policy.keep_age_s * 1000),
               "1000"},
              [done = std::move(done)](redis::errc e, redis::reply&& r) {
                tick_result out;
                if (failed(e, r, out))
                  return done(std::move(out));
                out.promoted = int_at(r, 0);
                out.requeued = int_at(r, 1);
                out.stalled_failed = int_at(r, 2);
                out.next_due_ms = int_at(r, 3);
                out.next_expiry_ms = int_at(r, 4);
                out.trimmed = int_at(r, 5);
                done(std::move(out));
              });
}

void store::counts(std::size_t hint, const std::string& queue, done_fn<queue_counts> done) {
  redis_.eval(hint, scripts_.stats, {meta_key(queue)}, {},
              [done = std::move(done)](redis::errc e, redis::reply&& r) {
                queue_counts out;
                if (failed(e, r, out))
                  return done(std::move(out));
                out.waiting = int_at(r, 0);
                out.delayed = int_at(r, 1);
                out.active = int_at(r, 2);
                out.completed = int_at(r, 3);
                out.failed = int_at(r, 4);
                out.paused = int_at(r, 5) == 1;
                out.oldest_ready_ms = int_at(r, 6);
                for (std::size_t i = 8; i + 1 < r.elements.size(); i += 2)
                  out.waiting_by_type.emplace_back(at(r, i), int_at(r, i + 1));
                done(std::move(out));
              });
}

void store::job(std::size_t hint, const std::string& queue, const std::string& id,
                done_fn<job_record> done) {
  auto ring = keys_ != nullptr ? keys_->get() : nullptr;
  redis_.command(hint, {"HGETALL", key_base(prefix_, queue) + "j:" + id},
                 [done = std::move(done), id, queue, ring = std::move(ring),
                  bad = undecryptable_](redis::errc e, redis::reply&& r) {
                   job_record out;
                   if (failed(e, r, out))
                     return done(std::move(out));
                   out = parse_job(id, r);
                   auto open = [&](std::string& value, const std::string& aad, const char* what) {
                     if (!out.ok() || !crypto::is_envelope(value))
                       return;
                     auto o = ring ? ring->open(aad, value) : crypto::open_without_keys(value);
                     if (o.code == crypto::errc::ok) {
                       value = std::move(o.plaintext);
                       return;
                     }
                     bad->fetch_add(1, std::memory_order_relaxed);
                     out.error = errc::undecryptable;
                     out.detail =
                         std::string("the job's ") + what + " is encrypted under key \"" +
                         o.key_id + "\", which " +
                         (o.code == crypto::errc::key_missing
                              ? std::string("is not in encryption.keys_file")
                              : std::string("does not open it: ") + crypto::to_string(o.code)) +
                         "; nothing was changed";
                   };
                   open(out.payload, payload_aad(queue, out.type), "payload");
                   open(out.result, result_aad(queue, id), "result");
                   done(std::move(out));
                 });
}

void store::retry(std::size_t hint, const std::string& queue, const std::string& id,
                  std::int64_t now_ms, done_fn<outcome_base> done) {
  redis_.eval(hint, scripts_.retry, {meta_key(queue)}, {std::to_string(now_ms), id},
              [done = std::move(done), id](redis::errc e, redis::reply&& r) {
                outcome_base out;
                if (failed(e, r, out))
                  return done(std::move(out));
                auto code = int_at(r, 0);
                if (code == code_not_found)
                  return done({errc::not_found, "no job " + id + " in this queue"});
                if (code == code_conflict)
                  return done({errc::conflict, "job " + id + " is " + state_name(at(r, 1)) +
                                                   "; only a failed job can be retried"});
                done(std::move(out));
              });
}

void store::remove(std::size_t hint, const std::string& queue, const std::string& id,
                   done_fn<outcome_base> done) {
  redis_.eval(hint, scripts_.remove, {meta_key(queue)}, {id},
              [done = std::move(done), id](redis::errc e, redis::reply&& r) {
                outcome_base out;
                if (failed(e, r, out))
                  return done(std::move(out));
                auto code = int_at(r, 0);
                if (code == code_not_found)
                  return done({errc::not_found, "no job " + id + " in this queue"});
                if (code == code_conflict)
                  return done(
                      {errc::conflict, "job " + id +
                                           " is active (leased by a worker); it can be "
                                           "deleted once it finished or its lease expired"});
                done(std::move(out));
              });
}

void store::sequence(std::size_t hint, const std::string& queue,
                     done_fn<std::pair<outcome_base, std::int64_t>> done) {
  redis_.command(hint, {"HGET", meta_key(queue), "seq"},
                 [done = std::move(done)](redis::errc e, redis::reply&& r) {
                   std::pair<outcome_base, std::int64_t> out{{}, 0};
                   if (e != redis::errc::ok || r.is_error())
                     out.first = redis_failure(e, r);
                   else
                     out.second = to_i64(r);
                   done(std::move(out));
                 });
}

void store::set_paused(std::size_t hint, const std::string& queue, bool paused,
                       done_fn<outcome_base> done) {
  std::vector<std::string> args =
      paused ? std::vector<std::string>{"HSET", meta_key(queue), "paused", "1"}
             : std::vector<std::string>{"HDEL", meta_key(queue), "paused"};
  redis_.command(hint, std::move(args), [done = std::move(done)](redis::errc e, redis::reply&& r) {
    if (e != redis::errc::ok || r.is_error())
      return done(redis_failure(e, r));
    done(outcome_base{});
  });
}

} // namespace sessiond::queue
