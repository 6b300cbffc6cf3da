// See adapter_options.hpp.
#include "app/adapter_options.hpp"

#include <chrono>
#include <stdexcept>

namespace sessiond::app {

http::server_options http_options(const config::config& c) {
  http::server_options o;
  auto colon = c.http.listen.rfind(':');
  o.address = c.http.listen.substr(0, colon);
  o.port = static_cast<std::uint16_t>(std::stoi(c.http.listen.substr(colon + 1)));
  o.max_body_bytes = static_cast<std::size_t>(c.http.max_body_bytes);
  o.max_header_bytes = static_cast<std::size_t>(c.http.max_header_bytes);
  o.max_connections = static_cast<std::size_t>(c.http.max_connections);
  o.header_timeout = std::chrono::milliseconds(c.http.header_timeout_ms);
  o.idle_timeout = std::chrono::milliseconds(c.http.idle_timeout_ms);
  return o;
}

redis::client_options redis_options(const config::config& c, const std::string& url,
                                    const std::string& setting) {
  redis::client_options o;
  std::string error;
  if (!redis::parse_url(url, o, error))
    throw std::runtime_error(setting + ": " + error);
  o.connections = static_cast<std::size_t>(c.redis.connections);
  o.connect_timeout = std::chrono::milliseconds(c.redis.connect_timeout_ms);
  o.command_timeout = std::chrono::milliseconds(c.redis.command_timeout_ms);
  o.reconnect_min = std::chrono::milliseconds(c.redis.reconnect_min_ms);
  o.reconnect_max = std::chrono::milliseconds(c.redis.reconnect_max_ms);
  o.tls_ca_file = c.redis.tls_ca_file;
  o.tls_cert_file = c.redis.tls_cert_file;
  o.tls_key_file = c.redis.tls_key_file;
  return o;
}

postgres::client_options postgres_options(const config::config& c) {
  postgres::client_options o;
  o.url = c.postgres.url;
  o.connect_timeout = std::chrono::milliseconds(c.postgres.connect_timeout_ms);
  o.statement_timeout = std::chrono::milliseconds(c.postgres.statement_timeout_ms);
  o.application_name = "sessiond:" + c.node.id;
  o.search_path = c.postgres.schema;
  return o;
}

} // namespace sessiond::app
