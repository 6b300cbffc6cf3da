// A sessiond node: the I/O threads (HTTP and Redis), the actor system with the supervisor tree,
// and the HTTP API, started and stopped as one. main() and the integration tests use it.
#pragma once

#include "config/config.hpp"
#include "messages/session.hpp"
#include "messages/sync.hpp"
#include "model/ttl.hpp"

#include <caf/fwd.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace sessiond::app {

struct node_stats {
  std::uint64_t backpressure_rejections = 0;
  std::uint64_t redis_failures = 0;
  std::uint64_t shard_restarts = 0;
  std::uint64_t router_restarts = 0;
  bool redis_up = false;
};

/// Creates postgres.schema if missing and applies the embedded migrations (`sessiond migrate`).
/// Returns the files applied; throws std::runtime_error with the reason.
std::vector<std::string> migrate(const config::config& cfg);

class node {
public:
  /// `clock` must outlive the node.
  explicit node(config::config cfg, const model::clock& clock = model::system_clock());
  ~node();
  node(const node&) = delete;
  node& operator=(const node&) = delete;

  /// Starts everything; returns the HTTP port. Throws std::runtime_error with a clear message.
  std::uint16_t start();
  /// Graceful stop: stop accepting, let in-flight requests finish (up to http.drain_timeout_ms),
  /// stop the actors and the I/O threads. Idempotent.
  void stop();
  /// Blocks until stop is requested (request_stop or supervisor escalation); returns the
  /// exit code asked for.
  int wait_for_stop();
  /// Asks wait_for_stop to return `code` (signal-safe: no, call from a normal thread).
  void request_stop(int code);
  /// Re-reads auth's tokens files (what SIGHUP does): true when the new tokens are in use; a
  /// file that cannot be used keeps the old ones. Logs one line. Any thread, after start().
  bool reload_auth();
  /// Re-reads encryption.keys_file (SIGHUP too): true when the new keys are in use; a file that
  /// cannot be used keeps the old ones. Logs one line. Any thread, after start().
  bool reload_encryption();

  caf::actor_system& system();
  messages::router_actor router() const;
  /// The current sync actor (a restarted one has a new handle).
  messages::sync_actor sync() const;
  std::uint16_t port() const;
  node_stats stats() const;
  const config::config& cfg() const;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace sessiond::app
