// The JSON the queue API answers with (docs/queue.md): jobs, leases, counts, reports.
#pragma once

#include "adapters/queue/store.hpp"

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace sessiond::api {

/// {"id","state"} of one enqueued job (plus "deduplicated": true when a dedup key matched).
std::string enqueued_json(const queue::enqueued& j);
/// {"ids":[…],"states":[…]} of a batch.
std::string enqueued_batch_json(const queue::enqueue_result& r);
/// {"jobs":[{"id","type","payload","attempt","lease_token","lease_expires_at"}…]}; the payload
/// goes out as the JSON object it is.
std::string leased_json(const queue::lease_result& r);
/// {"completed":[ids],"lost":[ids]} of POST …/jobs:complete (a missing job counts as lost).
std::string completed_batch_json(const std::vector<queue::finish_entry>& entries,
                                 const queue::finish_result& r);
/// {"lease_expires_at","lease_ms"} of an extended lease.
std::string extended_json(std::int64_t expires_ms, std::int64_t lease_ms);
/// One job: state, attempts, history of its attempts with their errors, result.
std::string job_json(const std::string& queue, const queue::job_record& j);
/// One queue's counts per state, oldest waiting age and `settings`.
nlohmann::json queue_json(const std::string& queue, const queue::queue_counts& c,
                          nlohmann::json settings, std::int64_t now_ms);

} // namespace sessiond::api
