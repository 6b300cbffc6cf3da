// Unit tests of the session API's input handling: every bad request is answered with a clear 4xx
// problem+json before anything reaches a shard. No servers: responses are captured in memory.
#include "api/routes.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <optional>

using namespace sessiond;

namespace {

struct captured : http::responder {
  std::optional<http::response>* out;
  explicit captured(std::optional<http::response>* o) : out(o) {}
  void send(http::response&& r) override { *out = std::move(r); }
};

struct fixture {
  std::shared_ptr<api::route_table> router = std::make_shared<api::route_table>(4);
  std::shared_ptr<api::shard_gate> gate = std::make_shared<api::shard_gate>(4, 2);
  api::routes routes{api::api_options{}, router, gate};

  http::response call(http::method verb, std::string target, std::string body = {},
                      std::string content_type = "application/json",
                      std::optional<std::string> if_match = std::nullopt,
                      std::optional<std::string> if_none_match = std::nullopt) {
    http::request req;
    req.verb = verb;
    req.target = std::move(target);
    req.body = std::move(body);
    req.content_type = std::move(content_type);
    if (if_match) {
      req.has_if_match = true;
      req.if_match = *if_match;
    }
    if (if_none_match) {
      req.has_if_none_match = true;
      req.if_none_match = *if_none_match;
    }
    std::optional<http::response> out;
    routes(std::move(req), std::make_shared<captured>(&out));
    REQUIRE(out);
    return std::move(*out);
  }
};

std::string header(const http::response& r, const std::string& name) {
  for (auto& [k, v] : r.headers)
    if (k == name)
      return v;
  return {};
}

void check_problem(const http::response& r, unsigned status) {
  CHECK(r.status == status);
  CHECK(r.content_type == "application/problem+json");
  auto j = nlohmann::json::parse(r.body);
  CHECK(j["status"] == status);
  CHECK(j["title"].is_string());
  CHECK(j["detail"].is_string());
  CHECK(j["type"].get<std::string>().rfind("urn:sessiond:problem:", 0) == 0);
}

} // namespace

TEST_CASE("an unknown route answers 404 problem+json") {
  fixture f;
  check_problem(f.call(http::method::get, "/v2/nothing"), 404);
  check_problem(f.call(http::method::get, "/v1/sessions"), 404);
}

TEST_CASE("a wrong method answers 405 with Allow") {
  fixture f;
  auto r = f.call(http::method::post, "/v1/sessions/abc");
  check_problem(r, 405);
  CHECK(header(r, "Allow") == "GET, PUT, PATCH, DELETE");
  check_problem(f.call(http::method::put, "/v1/users/u1/sessions"), 405);
  check_problem(f.call(http::method::post, "/healthz"), 405);
}

TEST_CASE("an invalid session or user id answers 400") {
  fixture f;
  check_problem(f.call(http::method::get, "/v1/sessions/a%20b"), 400);
  check_problem(f.call(http::method::get, "/v1/sessions/" + std::string(129, 'x')), 400);
  check_problem(f.call(http::method::get, "/v1/sessions/a/b"), 400);
  check_problem(f.call(http::method::get, "/v1/users/bad%id/sessions"), 400);
}

TEST_CASE("PUT needs application/json, PATCH needs application/merge-patch+json") {
  fixture f;
  check_problem(
      f.call(http::method::put, "/v1/sessions/s1", R"({"user_id":"u","data":{}})", "text/plain"),
      415);
  check_problem(f.call(http::method::put, "/v1/sessions/s1", R"({"user_id":"u","data":{}})", ""),
                415);
  check_problem(f.call(http::method::patch, "/v1/sessions/s1", "{}", "application/json"), 415);
}

TEST_CASE("bad bodies answer 400, 413 or 422") {
  fixture f;
  check_problem(f.call(http::method::put, "/v1/sessions/s1", "{oops"), 400);
  check_problem(f.call(http::method::put, "/v1/sessions/s1", R"({"user_id":"u","data":[]})"), 400);
  check_problem(
      f.call(http::method::patch, "/v1/sessions/s1", "{oops", "application/merge-patch+json"), 400);
  check_problem(
      f.call(http::method::patch, "/v1/sessions/s1", "[1]", "application/merge-patch+json"), 422);
}

TEST_CASE("malformed or conflicting preconditions answer 400") {
  fixture f;
  std::string body = R"({"user_id":"u","data":{}})";
  check_problem(f.call(http::method::put, "/v1/sessions/s1", body, "application/json", "W/\"1\""),
                400);
  check_problem(f.call(http::method::put, "/v1/sessions/s1", body, "application/json", "1"), 400);
  check_problem(f.call(http::method::del, "/v1/sessions/s1", "", "", "garbage"), 400);
  check_problem(
      f.call(http::method::put, "/v1/sessions/s1", body, "application/json", "\"1\"", "*"), 400);
  check_problem(
      f.call(http::method::put, "/v1/sessions/s1", body, "application/json", std::nullopt, "\"3\""),
      400);
}

TEST_CASE("a valid request with no live shard answers 503 with Retry-After, never hangs") {
  fixture f;
  auto r = f.call(http::method::get, "/v1/sessions/s1");
  check_problem(r, 503);
  CHECK(f.gate->in_flight(0) + f.gate->in_flight(1) + f.gate->in_flight(2) + f.gate->in_flight(3) ==
        0);
}

TEST_CASE("the shard gate refuses past its limit and counts the refusals") {
  api::shard_gate g(2, 2);
  CHECK(g.try_enter(0));
  CHECK(g.try_enter(0));
  CHECK_FALSE(g.try_enter(0));
  CHECK(g.try_enter(1));
  CHECK(g.rejected() == 1);
  g.leave(0);
  CHECK(g.try_enter(0));
  CHECK(g.in_flight(0) == 2);
}

TEST_CASE("readyz reports each dependency and answers 503 when one is down") {
  bool redis_up = false;
  api::api_options o;
  o.readiness = [&] { return std::vector<api::dependency_check>{{"redis", redis_up, true, ""}}; };
  api::routes routes{o, std::make_shared<api::route_table>(1),
                     std::make_shared<api::shard_gate>(1, 1)};
  auto call = [&] {
    std::optional<http::response> out;
    http::request req;
    req.target = "/readyz";
    req.verb = http::method::get;
    routes(std::move(req), std::make_shared<captured>(&out));
    return *out;
  };
  auto down = call();
  CHECK(down.status == 503);
  CHECK(nlohmann::json::parse(down.body)["checks"]["redis"] == "down");
  redis_up = true;
  auto up = call();
  CHECK(up.status == 200);
  CHECK(nlohmann::json::parse(up.body)["status"] == "ready");
}

TEST_CASE("media types compare without parameters and case") {
  CHECK(api::media_type("Application/JSON; charset=utf-8") == "application/json");
  CHECK(api::media_type(" application/merge-patch+json ") == "application/merge-patch+json");
  CHECK(api::media_type("") == "");
}

TEST_CASE("operator routes: a bad retention body is a 400 and runs nothing, wrong methods 405") {
  api::api_options o;
  std::vector<bool> runs; // dry_run of each retention run asked for
  int syncs = 0;
  o.retention_now = [&](bool dry_run, api::answer_fn answer) {
    runs.push_back(dry_run);
    answer(200, "{}");
  };
  o.sync_now = [&](api::answer_fn answer) {
    ++syncs;
    answer(503, "sync failed: PostgreSQL: connect_failed");
  };
  o.status_json = [] { return std::string(R"({"mode":"redis-primary"})"); };
  api::routes routes{o, std::make_shared<api::route_table>(1),
                     std::make_shared<api::shard_gate>(1, 1)};
  auto call = [&](http::method verb, std::string target, std::string body = {}) {
    std::optional<http::response> out;
    http::request req;
    req.verb = verb;
    req.target = std::move(target);
    req.body = std::move(body);
    req.content_type = "application/json";
    routes(std::move(req), std::make_shared<captured>(&out));
    REQUIRE(out);
    return std::move(*out);
  };
  for (const char* bad : {"{oops", "[true]", R"({"dry_run":"yes"})", R"({"dry_run":1})",
                          R"({"dry_run":true,"days":1})"}) {
    CAPTURE(bad);
    check_problem(call(http::method::post, "/v1/admin/retention", bad), 400);
  }
  CHECK(runs.empty());
  CHECK(call(http::method::post, "/v1/admin/retention").status == 200);
  CHECK(call(http::method::post, "/v1/admin/retention", R"({"dry_run":true})").status == 200);
  CHECK(runs == std::vector<bool>{false, true});
  auto get = call(http::method::get, "/v1/admin/retention");
  check_problem(get, 405);
  CHECK(header(get, "Allow") == "POST");
  check_problem(call(http::method::get, "/v1/admin/sync"), 405);
  CHECK(syncs == 0);
  check_problem(call(http::method::post, "/v1/admin/sync"), 503); // a failed sync says why
  CHECK(syncs == 1);
  check_problem(call(http::method::post, "/v1/status"), 405);
  CHECK(call(http::method::get, "/v1/status").body == R"({"mode":"redis-primary"})");
  check_problem(call(http::method::get, "/"), 404); // no status page configured: no route
}

TEST_CASE("readyz stays ready while a dependency that is not required is down") {
  api::api_options o;
  o.readiness = [] {
    return std::vector<api::dependency_check>{{"redis", true, true, ""},
                                              {"postgres", false, false, "backlog 12"}};
  };
  api::routes routes{o, std::make_shared<api::route_table>(1),
                     std::make_shared<api::shard_gate>(1, 1)};
  std::optional<http::response> out;
  http::request req;
  req.target = "/readyz";
  req.verb = http::method::get;
  routes(std::move(req), std::make_shared<captured>(&out));
  REQUIRE(out);
  CHECK(out->status == 200);
  auto j = nlohmann::json::parse(out->body);
  CHECK(j["checks"]["postgres"] == "down");
  CHECK(j["details"]["postgres"] == "backlog 12");
  CHECK(j["status"] == "ready");
}
