// Unit tests of api/auth_gate: which routes need which token, the Authorization header's parse,
// and the 401 / 403 / 429 answers with their headers and counts. No servers: answers are captured.
#include "adapters/metrics/text_serializer.hpp"
#include "api/auth_gate.hpp"
#include "api/routes.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <optional>

using namespace sessiond;
using Catch::Matchers::Contains;

namespace {

const std::string api_token = "api-token-aaaaaaaaaaaaaaaa";
const std::string admin_token = "admin-token-cccccccccccccc";
const std::string other_api_token = "api-token-rotated-dddddddd";

struct captured : http::responder {
  std::optional<http::response>* out;
  explicit captured(std::optional<http::response>* o) : out(o) {}
  void send(http::response&& r) override { *out = std::move(r); }
};

std::string header(const http::response& r, const std::string& name) {
  for (auto& [k, v] : r.headers)
    if (k == name)
      return v;
  return {};
}

struct fixture {
  metrics::Registry registry;
  std::int64_t now = 1000000;
  std::shared_ptr<api::auth_gate> gate;
  std::vector<std::string> warnings;

  explicit fixture(bool protect_metrics = false) {
    api::auth_options o;
    o.protect_metrics = protect_metrics;
    o.now_ms = [this] { return now; };
    o.warn = [this](const std::string& w) { warnings.push_back(w); };
    gate = std::make_shared<api::auth_gate>(
        std::make_shared<const auth::token_set>(std::vector<std::string>{api_token},
                                                std::vector<std::string>{admin_token}),
        std::move(o), registry);
  }

  /// The gate's answer, or nullopt when it let the request through.
  std::optional<http::response> call(const std::string& target, const std::string& authorization,
                                     const std::string& address = "192.0.2.10") {
    http::request req;
    req.verb = http::method::get;
    req.target = target;
    req.authorization = authorization;
    req.remote_address = address;
    std::optional<http::response> out;
    std::string_view path = req.target;
    bool admitted =
        gate->admit(req, path.substr(0, path.find('?')), std::make_shared<captured>(&out));
    CHECK(admitted == !out.has_value());
    return out;
  }

  std::string metrics_text() { return metrics::serialize(registry); }
};

void check_problem(const http::response& r, unsigned status) {
  CHECK(r.status == status);
  CHECK(r.content_type == "application/problem+json");
  auto j = nlohmann::json::parse(r.body);
  CHECK(j["status"] == status);
  CHECK(!j["detail"].get<std::string>().empty());
}

} // namespace

TEST_CASE("health and readiness are open; admin routes and the status JSON need an admin token") {
  using api::access;
  CHECK(api::access_for("/healthz", true) == access::open);
  CHECK(api::access_for("/readyz", true) == access::open);
  CHECK(api::access_for("/metrics", false) == access::open);
  CHECK(api::access_for("/metrics", true) == access::token);
  CHECK(api::access_for("/", false) == access::open);
  CHECK(api::access_for("/", true) == access::token);
  CHECK(api::access_for("/v1/sessions/s1", false) == access::token);
  CHECK(api::access_for("/v1/users/u1/sessions", false) == access::token);
  CHECK(api::access_for("/v1/queues/mail/jobs", false) == access::token);
  CHECK(api::access_for("/v1/cache/user/k", false) == access::token);
  CHECK(api::access_for("/v1/admin/sync", false) == access::admin);
  CHECK(api::access_for("/v1/admin/sync/rejected/requeue", false) == access::admin);
  CHECK(api::access_for("/v1/admin", false) == access::admin);
  CHECK(api::access_for("/v1/status", false) == access::admin);
  CHECK(api::access_for("/v1/cluster", false) == access::admin);
  // Default deny: paths no route serves today still need a token.
  CHECK(api::access_for("/v2/anything", false) == access::token);
  CHECK(api::access_for("//v1/admin/sync", false) == access::token);
  CHECK(api::access_for("/healthz/", false) == access::token);
}

TEST_CASE("the bearer token is read from Authorization in any case of the scheme") {
  CHECK(api::bearer_token("Bearer abc") == "abc");
  CHECK(api::bearer_token("bearer abc") == "abc");
  CHECK(api::bearer_token("BEARER   abc  ") == "abc");
  CHECK(api::bearer_token("Bearer\tabc") == "abc");
  CHECK(api::bearer_token("Bearer") == "");
  CHECK(api::bearer_token("Bearer ") == "");
  CHECK(api::bearer_token("Bearerabc") == "");
  CHECK(api::bearer_token("Basic dXNlcjpwYXNz") == "");
  CHECK(api::bearer_token("") == "");
  CHECK(api::bearer_token("Bearer a, Bearer b") == "a, Bearer b"); // two headers: matches nothing
}

TEST_CASE("a request without a token answers 401 with WWW-Authenticate: Bearer") {
  fixture f;
  auto r = f.call("/v1/sessions/s1", "");
  REQUIRE(r);
  check_problem(*r, 401);
  CHECK(header(*r, "WWW-Authenticate") == "Bearer realm=\"sessiond\"");
  CHECK(nlohmann::json::parse(r->body)["type"] == "urn:sessiond:problem:unauthorized");
  auto basic = f.call("/v1/sessions/s1", "Basic dXNlcjpwYXNz");
  REQUIRE(basic);
  CHECK(basic->status == 401);
  CHECK_THAT(f.metrics_text(), Contains("sessiond_auth_failures_total{reason=\"missing\"} 2"));
}

TEST_CASE("an unknown token answers 401 invalid_token and is never echoed") {
  fixture f;
  auto r = f.call("/v1/sessions/s1", "Bearer not-a-token-of-this-node");
  REQUIRE(r);
  check_problem(*r, 401);
  CHECK(header(*r, "WWW-Authenticate") == "Bearer realm=\"sessiond\", error=\"invalid_token\"");
  CHECK(r->body.find("not-a-token-of-this-node") == std::string::npos);
  CHECK_THAT(f.metrics_text(), Contains("sessiond_auth_failures_total{reason=\"unknown\"} 1"));
}

TEST_CASE("an API token calls the session routes but gets 403 on the admin routes") {
  fixture f;
  CHECK_FALSE(f.call("/v1/sessions/s1", "Bearer " + api_token));
  CHECK_FALSE(f.call("/v1/users/u1/sessions?x=1", "bearer " + api_token));
  for (const char* admin : {"/v1/admin/sync", "/v1/admin/retention", "/v1/status", "/v1/cluster"}) {
    CAPTURE(admin);
    auto r = f.call(admin, "Bearer " + api_token);
    REQUIRE(r);
    check_problem(*r, 403);
    CHECK(nlohmann::json::parse(r->body)["type"] == "urn:sessiond:problem:forbidden");
    CHECK(header(*r, "WWW-Authenticate") ==
          "Bearer realm=\"sessiond\", error=\"insufficient_scope\"");
  }
  CHECK_THAT(f.metrics_text(), Contains("sessiond_auth_failures_total{reason=\"forbidden\"} 4"));
}

TEST_CASE("an admin token calls every route") {
  fixture f;
  for (const char* path : {"/v1/sessions/s1", "/v1/admin/sync", "/v1/status", "/v1/cluster",
                           "/v1/queues", "/metrics", "/"})
    CHECK_FALSE(f.call(path, "Bearer " + admin_token));
}

TEST_CASE("/healthz and /readyz stay open; /metrics and the status page follow protect_metrics") {
  fixture open_metrics(false);
  for (const char* path : {"/healthz", "/readyz", "/metrics", "/"})
    CHECK_FALSE(open_metrics.call(path, ""));
  fixture protect(true);
  CHECK_FALSE(protect.call("/healthz", ""));
  CHECK_FALSE(protect.call("/readyz", ""));
  for (const char* path : {"/metrics", "/"}) {
    auto r = protect.call(path, "");
    REQUIRE(r);
    CHECK(r->status == 401);
    CHECK_FALSE(protect.call(path, "Bearer " + api_token)); // any valid token
  }
}

TEST_CASE("after 20 failures in 10 s an address gets 429 with Retry-After, valid token or not") {
  fixture f;
  const std::string attacker = "198.51.100.7";
  for (int i = 0; i < 20; ++i) {
    auto r = f.call("/v1/sessions/s1", "Bearer guess-" + std::to_string(i), attacker);
    REQUIRE(r);
    CHECK(r->status == 401);
    f.now += 100;
  }
  CHECK(f.warnings.size() == 1);
  CHECK_THAT(f.warnings.front(), Contains("198.51.100.7"));
  auto blocked = f.call("/v1/sessions/s1", "Bearer " + api_token, attacker);
  REQUIRE(blocked);
  check_problem(*blocked, 429);
  CHECK(header(*blocked, "Retry-After") == "10");
  CHECK(nlohmann::json::parse(blocked->body)["type"] ==
        "urn:sessiond:problem:too-many-auth-failures");
  CHECK_FALSE(f.call("/healthz", "", attacker)); // open routes are not limited
  CHECK_FALSE(f.call("/v1/sessions/s1", "Bearer " + api_token, "198.51.100.8")); // nor others
  f.now += 5500;
  auto later = f.call("/v1/sessions/s1", "Bearer " + api_token, attacker);
  REQUIRE(later);
  CHECK(header(*later, "Retry-After") == "5");
  f.now += 4500;
  CHECK_FALSE(f.call("/v1/sessions/s1", "Bearer " + api_token, attacker)); // block over
  CHECK_THAT(f.metrics_text(), Contains("sessiond_auth_failures_total{reason=\"rate_limited\"} 2"));
  CHECK_THAT(f.metrics_text(), Contains("sessiond_auth_failures_total{reason=\"unknown\"} 20"));
}

TEST_CASE("403s do not count towards the limit: the token was valid") {
  fixture f;
  for (int i = 0; i < 30; ++i)
    REQUIRE(f.call("/v1/admin/sync", "Bearer " + api_token)->status == 403);
  CHECK_FALSE(f.call("/v1/sessions/s1", "Bearer " + api_token));
}

TEST_CASE("replace() swaps the token set: the new token works, the old one answers 401") {
  fixture f;
  f.gate->replace(std::make_shared<const auth::token_set>(std::vector<std::string>{other_api_token},
                                                          std::vector<std::string>{admin_token}));
  CHECK(f.call("/v1/sessions/s1", "Bearer " + api_token)->status == 401);
  CHECK_FALSE(f.call("/v1/sessions/s1", "Bearer " + other_api_token));
  f.gate->count_reload(true);
  f.gate->count_reload(false);
  auto text = f.metrics_text();
  CHECK_THAT(text, Contains("sessiond_auth_reloads_total{result=\"ok\"} 1"));
  CHECK_THAT(text, Contains("sessiond_auth_reloads_total{result=\"failed\"} 1"));
  CHECK_THAT(text, Contains("sessiond_auth_tokens{role=\"api\"} 1"));
}

TEST_CASE("the routes answer 401 before any route runs when a gate is set") {
  metrics::Registry registry;
  api::api_options o;
  o.auth = std::make_shared<api::auth_gate>(
      std::make_shared<const auth::token_set>(std::vector<std::string>{api_token},
                                              std::vector<std::string>{}),
      api::auth_options{}, registry);
  api::routes routes{o, std::make_shared<api::route_table>(4),
                     std::make_shared<api::shard_gate>(4, 2)};
  auto call = [&](const std::string& target, const std::string& authorization) {
    http::request req;
    req.verb = http::method::put;
    req.target = target;
    req.body = "not json";
    req.content_type = "application/json";
    req.authorization = authorization;
    std::optional<http::response> out;
    routes(std::move(req), std::make_shared<captured>(&out));
    REQUIRE(out);
    return std::move(*out);
  };
  CHECK(call("/v1/sessions/s1", "").status == 401); // not 400: nothing was parsed
  CHECK(call("/v1/sessions/s1", "Bearer " + api_token).status == 400); // then the body is checked
  CHECK(call("/healthz", "").status == 405);
}
