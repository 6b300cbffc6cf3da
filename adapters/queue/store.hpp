// The job queue's Redis side: every operation is one script (scripts.hpp) or one command, sent
// on the caller's thread and answered through a callback on a Redis I/O thread. Knows nothing
// of HTTP or actors; the API and the queue actors share it.
#pragma once

#include "adapters/queue/scripts.hpp"
#include "adapters/redis/client.hpp"
#include "model/queue.hpp"

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace sessiond::crypto {
class keyring_holder;
}

namespace sessiond::queue {

enum class errc {
  ok = 0,
  full,            ///< the queue holds max_length unfinished jobs (429)
  too_many_types,  ///< max_waiting_types job types wait in the queue already (422)
  too_many_queues, ///< queues.max_queues queues exist already (422)
  fenced,          ///< a recurring job was enqueued for this period already (by any node)
  not_found,       ///< no such job (404)
  conflict,        ///< the job's state refuses the change (409)
  redis,           ///< Redis failed or refused (503): `detail` says how
  undecryptable,   ///< a stored payload or result does not open (500): `detail` names the key id
};
const char* to_string(errc e);

/// P{q:<name>}: the key base of one queue; every key of the queue starts with it.
std::string key_base(const std::string& prefix, const std::string& queue);
/// P{queues}: the set of every queue name.
std::string registry_key(const std::string& prefix);

/// The settings of one queue that its scripts apply.
struct queue_policy {
  std::int64_t max_length = 100000;
  std::int64_t lease_ms = 30000;
  std::int64_t max_attempts = 3;
  std::int64_t backoff_ms = 1000;
  std::int64_t max_backoff_ms = 3600000;
  std::int64_t max_stalled = 3;
  std::int64_t keep_completed = 1000;
  std::int64_t keep_failed = 10000;
  std::int64_t keep_age_s = 86400;
};

/// What every result carries: errc::ok, or why not (detail: one line for a problem+json).
struct outcome_base {
  errc error = errc::ok;
  std::string detail;
  bool ok() const { return error == errc::ok; }
};

struct enqueued {
  std::string id;
  std::string state; ///< waiting | delayed (or the state of the job a dedup key matched)
  bool created = true;
};
struct enqueue_result : outcome_base {
  std::vector<enqueued> jobs;
  std::int64_t unfinished = 0; ///< with errc::full: the queue's unfinished jobs
};

/// A recurring job's fence: the enqueue happens only if `period` is newer than the last one
/// enqueued under `schedule`.
struct schedule_fence {
  std::string schedule;
  std::int64_t period = 0;
};

struct leased_job {
  std::string id;
  std::string type;
  std::string payload;
  std::int64_t attempt = 1;
  std::string token;
  std::int64_t expires_ms = 0;
  std::int64_t ready_ms = 0; ///< since when it waited (for the wait-time histogram)
};
struct lease_result : outcome_base {
  bool paused = false;
  std::vector<leased_job> jobs;
};

/// One worker report for finish(): complete ('c'), fail with retry ('f'), fail for good ('F').
struct finish_entry {
  std::string id;
  std::string token;
  char kind = 'c';
  std::string value;   ///< 'c': result JSON (may be empty); 'f'/'F': the error text (plain)
  double random = 0.5; ///< in [0, 1): the retry delay's jitter
};
enum class finish_outcome { completed, retried_now, retried_later, failed, lost, not_found };
const char* to_string(finish_outcome o);
struct finished_job {
  finish_outcome what = finish_outcome::lost;
  std::int64_t lease_start_ms = 0;
};
struct finish_result : outcome_base {
  std::vector<finished_job> jobs; ///< one per entry, same order
};

struct extend_entry {
  std::string id;
  std::string token;
  std::int64_t lease_ms = 0;
};
struct extend_result : outcome_base {
  std::vector<std::int64_t> expires_ms; ///< one per entry; -1: the lease is no longer held
};

struct tick_result : outcome_base {
  std::int64_t promoted = 0;
  std::int64_t requeued = 0;       ///< expired leases put back to waiting
  std::int64_t stalled_failed = 0; ///< expired leases that failed the job for good
  std::int64_t next_due_ms = -1;
  std::int64_t next_expiry_ms = -1;
  std::int64_t trimmed = 0;
};

struct queue_counts : outcome_base {
  std::int64_t waiting = 0, delayed = 0, active = 0, completed = 0, failed = 0;
  bool paused = false;
  std::int64_t oldest_ready_ms = -1; ///< of the jobs next in line (-1: none waiting)
  std::vector<std::pair<std::string, std::int64_t>> waiting_by_type;
};

/// A job as stored, for GET …/jobs/{id}.
struct job_record : outcome_base {
  std::string id, type, payload, state;
  std::int64_t created_ms = 0, ready_ms = 0, attempts = 0, priority = 0, stalls = 0;
  std::optional<std::int64_t> max_attempts, lease_ms, due_ms, lease_expires_ms, lease_start_ms,
      finished_ms;
  std::string dedup_key;
  std::string history;    ///< JSON array text of the attempts that ended without completing
  std::string last_error; ///< JSON string text of the last error, empty when none
  std::string result;     ///< JSON text, empty when none
};

template <class Result>
using done_fn = std::function<void(Result&&)>;

/// Thread-safe (the Redis client is). `hint` picks a Redis connection as redis::client does; the
/// API passes the client's local_hint so replies stay on the I/O thread that sent them.
class store {
public:
  store(redis::client& redis, std::string prefix);

  /// Registers `queue` in P{queues} (within max_queues), then nothing else: callers do it once
  /// before a queue's first enqueue.
  void register_queue(std::size_t hint, const std::string& queue, std::int64_t max_queues,
                      done_fn<outcome_base> done);
  /// P{queues}: every queue name, sorted.
  void queue_names(std::size_t hint,
                   done_fn<std::pair<outcome_base, std::vector<std::string>>> done);

  void enqueue(std::size_t hint, const std::string& queue, const std::vector<model::job_spec>& jobs,
               const queue_policy& policy, std::int64_t now_ms,
               const std::optional<schedule_fence>& fence, done_fn<enqueue_result> done);
  /// Leases up to `max` jobs of `types` (empty: any) for `lease_ms` (a job's own lease_ms wins).
  /// Tokens are `token_prefix` followed by the job's place in the answer.
  void lease(std::size_t hint, const std::string& queue, std::int64_t max, std::int64_t lease_ms,
             const std::vector<std::string>& types, const std::string& token_prefix,
             std::int64_t now_ms, done_fn<lease_result> done);
  void finish(std::size_t hint, const std::string& queue, const std::vector<finish_entry>& entries,
              const queue_policy& policy, std::int64_t now_ms, done_fn<finish_result> done);
  void extend(std::size_t hint, const std::string& queue, const std::vector<extend_entry>& entries,
              std::int64_t now_ms, done_fn<extend_result> done);
  /// Gives leases back without counting their attempt (shutdown). Answers how many were held.
  void release(std::size_t hint, const std::string& queue,
               const std::vector<std::pair<std::string, std::string>>& id_tokens,
               std::int64_t now_ms, done_fn<std::pair<outcome_base, std::int64_t>> done);
  void tick(std::size_t hint, const std::string& queue, const queue_policy& policy,
            std::int64_t now_ms, done_fn<tick_result> done);
  void counts(std::size_t hint, const std::string& queue, done_fn<queue_counts> done);
  void job(std::size_t hint, const std::string& queue, const std::string& id,
           done_fn<job_record> done);
  void retry(std::size_t hint, const std::string& queue, const std::string& id, std::int64_t now_ms,
             done_fn<outcome_base> done);
  void remove(std::size_t hint, const std::string& queue, const std::string& id,
              done_fn<outcome_base> done);
  /// The queue's sequence counter: it moves whenever jobs are added or become waiting.
  void sequence(std::size_t hint, const std::string& queue,
                done_fn<std::pair<outcome_base, std::int64_t>> done);
  /// Leasing stops while paused (leases already held run on).
  void set_paused(std::size_t hint, const std::string& queue, bool paused,
                  done_fn<outcome_base> done);

  redis::client& redis() { return redis_; }
  std::size_t local_hint(std::size_t hint) const { return redis_.local_hint(hint); }

  /// Encryption at rest (encryption.keys_file; docs/security.md "Job payloads and results"):
  /// payloads are sealed at enqueue under the holder's current key with "job:<queue>:<type>" as
  /// associated data, results at completion with "job-result:<queue>:<id>", and both are opened
  /// when leased or read (plaintext passes through). A leased job whose payload does not open is
  /// failed for good at once, its error naming the key id, and left out of the lease: no worker
  /// ever runs on garbage, and POST …/retry runs it once the key is back. GET of such a job
  /// answers errc::undecryptable. Null (the default): plaintext. `keys` outlives the store; set
  /// before the first call.
  void seal_with(const crypto::keyring_holder* keys) { keys_ = keys; }
  /// Payloads and results read that did not open.
  std::uint64_t undecryptable() const { return undecryptable_->load(); }

private:
  std::string meta_key(const std::string& queue) const;
  /// The payloads of a lease opened; the jobs whose payload does not open failed for good.
  void open_leased(std::size_t hint, const std::string& queue, std::int64_t now_ms,
                   lease_result out, done_fn<lease_result> done);

  redis::client& redis_;
  std::string prefix_;
  scripts scripts_;
  const crypto::keyring_holder* keys_ = nullptr;
  std::shared_ptr<std::atomic<std::uint64_t>> undecryptable_ =
      std::make_shared<std::atomic<std::uint64_t>>(0);
};

/// The associated data a job's payload and its result are sealed with.
std::string payload_aad(const std::string& queue, const std::string& type);
std::string result_aad(const std::string& queue, const std::string& id);

/// A fencing-token prefix no other lease call uses: 16 random hex digits and a dot.
std::string token_prefix();
/// A uniform draw in [0, 1) for retry jitter (a generator per thread).
double unit_random();

} // namespace sessiond::queue
