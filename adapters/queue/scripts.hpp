// The job queue's Lua scripts: every change of a job's state is one of them, run atomically by
// Redis. All keys of one queue share the hash tag {q:<name>}, so each script touches one Redis
// Cluster slot. Key layout (P = redis.key_prefix, B = P{q:<name>}:):
//   B meta        hash  seq (id counter), n (unfinished jobs), act (active jobs), paused,
//                       sch:<schedule> (last period)
//   B types       set   job types that have waiting jobs
//   B w:<type>    zset  waiting jobs of a type, score -priority * 2^42 + sequence (lowest first)
//   B d           zset  delayed jobs (and retries in backoff), score due ms
//   B a           zset  lease entries by expiry ms: one per lease call ("<token prefix>"), one per
//                       extended or longer-running lease ("<token>")
//   B al          hash  lease entry -> the ids it covers (space-separated)
//   B c, B f      zset  completed, failed jobs, score finish ms (trimmed by count and age)
//   B dd          hash  dedup key -> id of the unfinished job holding it
//   B j:<id>      hash  one job: t type, p payload, st w|d|a|c|f, ca created ms, ra ready ms,
//                       a attempts, ma max attempts, pr priority, dk dedup key, lm lease ms,
//                       du due ms, tok lease token, le lease expiry, ls lease start,
//                       sc stalls, h history (JSON objects, comma-joined), e last error (JSON
//                       string), r result (JSON), fa finished ms
//   P{queues}     set   every queue name (a slot of its own; see store.cpp)
#pragma once

#include "adapters/redis/client.hpp"

namespace sessiond::queue {

/// The scripts, loaded once per client (EVALSHA; reloaded on NOSCRIPT by the client).
struct scripts {
  redis::script enqueue;        ///< one or many jobs, all or nothing; optional schedule fence
  redis::script lease;          ///< take up to n waiting jobs (promoting due delayed ones first)
  redis::script finish;         ///< complete or fail leased jobs, fenced by their lease tokens
  redis::script extend;         ///< move the expiry of leases that are still held
  redis::script release;        ///< give leases back without counting the attempt (shutdown)
  redis::script tick;           ///< promote due delayed jobs, reap expired leases, trim by age
  redis::script stats;          ///< counts per state, oldest waiting job (read only)
  redis::script retry;          ///< a failed job back to waiting
  redis::script remove;         ///< delete a job that is not active
  redis::script register_queue; ///< add a queue name to P{queues} within queues.max_queues
  scripts();
};

/// Codes the scripts return in the first element besides success.
enum script_code : long long {
  code_full = -429, ///< max_length reached
  code_too_many_types = -422,
  code_fenced = -409, ///< the schedule already enqueued this period
  code_not_found = -404,
  code_conflict = -4090, ///< the job is in a state that refuses the change (retry, delete)
};

/// Job types with waiting jobs one queue may hold at once (a lease over every type compares
/// their heads).
constexpr long long max_waiting_types = 100;

} // namespace sessiond::queue
