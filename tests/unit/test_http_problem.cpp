// Unit tests of the RFC 9457 problem rendering and the reason phrases of status lines.
#include "adapters/http/server.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cstring>

using sessiond::http::problem;
using sessiond::http::reason;

TEST_CASE("a problem carries type, title, status and detail as problem+json") {
  auto r = problem(404, "urn:sessiond:problem:not-found", "Not Found", "no session abc");
  CHECK(r.status == 404);
  CHECK(r.content_type == "application/problem+json");
  CHECK(r.headers.empty());
  auto j = nlohmann::json::parse(r.body);
  CHECK(j.size() == 4);
  CHECK(j["type"] == "urn:sessiond:problem:not-found");
  CHECK(j["title"] == "Not Found");
  CHECK(j["status"] == 404);
  CHECK(j["status"].is_number_unsigned());
  CHECK(j["detail"] == "no session abc");
}

TEST_CASE("a problem lists its members in RFC order") {
  auto r = problem(400, "about:blank", "Bad Request", "x");
  CHECK(r.body == R"({"type":"about:blank","title":"Bad Request","status":400,"detail":"x"})");
}

TEST_CASE("a problem escapes quotes, backslashes, newlines and control characters") {
  std::string detail = "field \"user_id\" is\nmissing \\ here\t\x01";
  auto r = problem(400, "urn:sessiond:problem:invalid-json", "Bad Request", detail);
  CHECK(r.body.find('\n') == std::string::npos);
  CHECK(r.body.find("\\\"user_id\\\"") != std::string::npos);
  CHECK(r.body.find("\\n") != std::string::npos);
  CHECK(r.body.find("\\u0001") != std::string::npos);
  CHECK(nlohmann::json::parse(r.body)["detail"] == detail);
}

TEST_CASE("a problem keeps unicode in detail and survives invalid UTF-8") {
  std::string detail = "caf\xC3\xA9 \xE2\x9C\x93 \xF0\x9F\x98\x80";
  auto r = problem(422, "urn:sessiond:problem:invalid", "Unprocessable Content", detail);
  CHECK(nlohmann::json::parse(r.body)["detail"] == detail);

  // Client bytes echoed into detail may be invalid UTF-8: rendered, not thrown.
  std::string broken = "bad \xFF\xFE byte";
  sessiond::http::response b;
  REQUIRE_NOTHROW(b = problem(400, "about:blank", "Bad Request", broken));
  auto j = nlohmann::json::parse(b.body);
  CHECK(j["detail"].get<std::string>().find("bad ") == 0);
}

TEST_CASE("reason phrases match the standard for the statuses the engine uses") {
  CHECK(std::strcmp(reason(200), "OK") == 0);
  CHECK(std::strcmp(reason(201), "Created") == 0);
  CHECK(std::strcmp(reason(204), "No Content") == 0);
  CHECK(std::strcmp(reason(304), "Not Modified") == 0);
  CHECK(std::strcmp(reason(400), "Bad Request") == 0);
  CHECK(std::strcmp(reason(404), "Not Found") == 0);
  CHECK(std::strcmp(reason(405), "Method Not Allowed") == 0);
  CHECK(std::strcmp(reason(408), "Request Timeout") == 0);
  CHECK(std::strcmp(reason(409), "Conflict") == 0);
  CHECK(std::strcmp(reason(410), "Gone") == 0);
  CHECK(std::strcmp(reason(412), "Precondition Failed") == 0);
  CHECK(std::strcmp(reason(413), "Content Too Large") == 0);
  CHECK(std::strcmp(reason(415), "Unsupported Media Type") == 0);
  CHECK(std::strcmp(reason(422), "Unprocessable Content") == 0);
  CHECK(std::strcmp(reason(429), "Too Many Requests") == 0);
  CHECK(std::strcmp(reason(431), "Request Header Fields Too Large") == 0);
  CHECK(std::strcmp(reason(500), "Internal Server Error") == 0);
  CHECK(std::strcmp(reason(503), "Service Unavailable") == 0);
}

TEST_CASE("an unknown status still has a non-empty reason phrase") {
  CHECK(std::strlen(reason(299)) > 0);
  CHECK(std::strlen(reason(0)) > 0);
}
