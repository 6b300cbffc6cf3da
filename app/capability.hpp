// What the node hands each capability it composes (the job queue, the cache): the configuration,
// the node's Redis client (used unless the capability has a Redis URL of its own), the I/O
// loops, the clock, the metrics registry and the encryption keyring. Pointers outlive the
// capability.
#pragma once

#include "adapters/redis/client.hpp"
#include "config/config.hpp"
#include "model/ttl.hpp"

#include <vector>

namespace boost::asio {
class io_context;
} // namespace boost::asio

namespace sessiond::metrics {
class Registry;
} // namespace sessiond::metrics

namespace sessiond::crypto {
class keyring_holder;
} // namespace sessiond::crypto

namespace sessiond::app {

struct capability_deps {
  const config::config* cfg = nullptr;
  redis::client* redis = nullptr;
  std::vector<boost::asio::io_context*> loops;
  const model::clock* clock = nullptr;
  metrics::Registry* registry = nullptr;
  /// The node's encryption keyring (encryption.keys_file); the cache seals its values
  /// and the queue its job payloads and results with it.
  const crypto::keyring_holder* keys = nullptr;
};

} // namespace sessiond::app
