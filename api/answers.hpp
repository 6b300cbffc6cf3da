// The answers every API route family sends: problem+json (type urn:sessiond:problem:<type>, with
// Retry-After when asked), JSON bodies, 204, 405 with Allow, and the request checks they share.
#pragma once

#include "adapters/http/server.hpp"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sessiond::api {

void send_problem(const http::responder_ptr& res, unsigned status, const char* type,
                  const char* title, std::string detail, std::int64_t retry_after_s = 0);
void send_json(const http::responder_ptr& res, unsigned status, std::string body,
               std::string location = {});
void no_content(const http::responder_ptr& res);
void method_not_allowed(const http::responder_ptr& res, const char* allow);
/// True when the body is empty or its Content-Type is application/json; else answers 415.
bool require_json(const http::request& req, const http::responder_ptr& res);
/// Splits "a/b/c" into its segments ("a/" gives "a" and an empty one).
std::vector<std::string_view> segments(std::string_view path);

} // namespace sessiond::api
