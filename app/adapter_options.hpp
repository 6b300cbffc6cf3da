// The adapters' options read from the node's configuration, for every capability that opens a
// Redis client, a PostgreSQL connection or the HTTP listener.
#pragma once

#include "adapters/http/server.hpp"
#include "adapters/postgres/client.hpp"
#include "adapters/redis/client.hpp"
#include "config/config.hpp"

#include <string>

namespace sessiond::app {

http::server_options http_options(const config::config& c);

/// A Redis client for `url` with the [redis] section's pool, timeouts and TLS files; `setting`
/// names the URL's key in errors ("redis.url", "redis.queue_url"). Throws on a bad URL.
redis::client_options redis_options(const config::config& c, const std::string& url,
                                    const std::string& setting);
inline redis::client_options redis_options(const config::config& c) {
  return redis_options(c, c.redis.url, "redis.url");
}

postgres::client_options postgres_options(const config::config& c);

} // namespace sessiond::app
