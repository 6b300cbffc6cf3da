// See answers.hpp.
#include "api/answers.hpp"

#include <cctype>

namespace sessiond::api {

void send_problem(const http::responder_ptr& res, unsigned status, const char* type,
                  const char* title, std::string detail, std::int64_t retry_after_s) {
  auto out =
      http::problem(status, std::string("urn:sessiond:problem:") + type, title, std::move(detail));
  if (retry_after_s > 0)
    out.headers.emplace_back("Retry-After", std::to_string(retry_after_s));
  res->send(std::move(out));
}

void send_json(const http::responder_ptr& res, unsigned status, std::string body,
               std::string location) {
  http::response out;
  out.status = status;
  out.body = std::move(body);
  if (!location.empty())
    out.headers.emplace_back("Location", std::move(location));
  res->send(std::move(out));
}

void no_content(const http::responder_ptr& res) {
  http::response out;
  out.status = 204;
  out.content_type.clear();
  res->send(std::move(out));
}

void method_not_allowed(const http::responder_ptr& res, const char* allow) {
  auto r = http::problem(405, "urn:sessiond:problem:method-not-allowed", "Method not allowed",
                         std::string("allowed methods: ") + allow);
  r.headers.emplace_back("Allow", allow);
  res->send(std::move(r));
}

/// Splits "a/b/c" into its segments.
std::vector<std::string_view> segments(std::string_view path) {
  std::vector<std::string_view> out;
  while (!path.empty()) {
    auto slash = path.find('/');
    out.push_back(path.substr(0, slash));
    if (slash == std::string_view::npos)
      break;
    path.remove_prefix(slash + 1);
    if (path.empty())
      out.emplace_back();
  }
  return out;
}

bool require_json(const http::request& req, const http::responder_ptr& res) {
  auto semi = req.content_type.find(';');
  std::string media = req.content_type.substr(0, semi);
  while (!media.empty() && media.back() == ' ')
    media.pop_back();
  for (auto& ch : media)
    ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  if (media == "application/json" || req.body.empty()) // pause, resume, retry carry no body
    return true;
  send_problem(res, 415, "unsupported-media-type", "Unsupported media type",
               "Content-Type must be application/json" + (req.content_type.empty()
                                                              ? std::string(" (none given)")
                                                              : " (got " + req.content_type + ")"));
  return false;
}

} // namespace sessiond::api
