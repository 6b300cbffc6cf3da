// Blocking calls over the asynchronous client, for threads that may block: the sync actor's
// (detached), benches and tests. Never call them on a thread that runs the client's
// io_context: the reply could not arrive.
#pragma once

#include "adapters/redis/client.hpp"

#include <chrono>

namespace sessiond::redis {

/// The outcome of a blocking call: `error` as the callback got it, errc::timeout when no reply
/// came within the wait (a late reply is dropped), errc::closed when the client dropped the
/// callback without calling it (stopped with its io_context gone).
struct waited {
  errc error = errc::ok;
  reply value;
};

waited command_wait(client& c, std::size_t conn_hint, std::vector<std::string> args,
                    std::chrono::milliseconds limit);
waited eval_wait(client& c, std::size_t conn_hint, const script& s, std::vector<std::string> keys,
                 std::vector<std::string> args, std::chrono::milliseconds limit);

} // namespace sessiond::redis
