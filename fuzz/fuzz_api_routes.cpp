// Fuzz target: the HTTP API routes in process (api::routes, metrics on) with no actors behind them.
// Every request is answered exactly once, 200..599, errors as problem+json with a matching status.
//
// Input: byte 0 picks the method (low 3 bits) and where the precondition line goes (bits 3-4);
// then target, Content-Type and precondition, each up to a '\n'; the rest is the body.
#include "adapters/metrics/registry.hpp"
#include "adapters/metrics/text_serializer.hpp"
#include "api/routes.hpp"
#include "fuzz/fuzz_check.hpp"

#include <nlohmann/json.hpp>

#include <array>
#include <memory>
#include <optional>

namespace {

using sessiond::fuzz::as_text;
namespace api = sessiond::api;
namespace http = sessiond::http;

constexpr std::size_t shards = 4;

/// Keeps the one response; a second send is a bug (a request completes exactly once).
class capture final : public http::responder {
public:
  explicit capture(std::optional<http::response>& out) : out_(out) {}
  void send(http::response&& r) override {
    FUZZ_CHECK(!out_);
    out_ = std::move(r);
  }

private:
  std::optional<http::response>& out_;
};

/// The next field up to '\n' (consumed); the whole rest when there is none.
std::string next_line(std::string_view& in) {
  auto nl = in.find('\n');
  std::string line(in.substr(0, nl));
  in.remove_prefix(nl == std::string_view::npos ? in.size() : nl + 1);
  return line;
}

http::request make_request(std::string_view in) {
  static constexpr std::array<http::method, 8> methods = {
      http::method::get,   http::method::head,    http::method::put, http::method::post,
      http::method::patch, http::method::options, http::method::del, http::method::other};
  http::request req;
  const auto selector = static_cast<unsigned char>(in.empty() ? 0 : in.front());
  in.remove_prefix(in.empty() ? 0 : 1);
  req.verb = methods[selector & 7u];
  req.target = next_line(in);
  req.content_type = next_line(in);
  auto precondition = next_line(in);
  // 0: If-Match when not empty, 1: If-None-Match when not empty, 2: both, 3: If-Match always.
  const unsigned where = (selector >> 3) & 3u;
  if (where == 3 || ((where == 0 || where == 2) && !precondition.empty())) {
    req.has_if_match = true;
    req.if_match = precondition;
  }
  if ((where == 1 || where == 2) && !precondition.empty()) {
    req.has_if_none_match = true;
    req.if_none_match = precondition;
  }
  req.body = std::string(in);
  return req;
}

/// Metrics on, as in a default node: every answer goes through the metered responder, and
/// GET /metrics renders the registry.
api::api_options options() {
  static sessiond::metrics::Registry registry;
  api::api_options o;
  o.metrics = std::make_shared<api::api_metrics>(registry);
  o.metrics_text = [] { return sessiond::metrics::serialize(registry); };
  return o;
}

void check_response(const http::response& r) {
  FUZZ_CHECK(r.status >= 200 && r.status <= 599);
  for (const auto& [name, value] : r.headers)
    FUZZ_CHECK(name.find_first_of("\r\n") == std::string::npos &&
               value.find_first_of("\r\n") == std::string::npos);
  if (r.status < 400)
    return;
  FUZZ_CHECK(r.content_type == "application/problem+json");
  auto j = nlohmann::json::parse(r.body, nullptr, false);
  FUZZ_CHECK(!j.is_discarded() && j.is_object());
  FUZZ_CHECK(j.contains("status") && j["status"].is_number_unsigned() && j["status"] == r.status);
  FUZZ_CHECK(j.contains("type") && j["type"].is_string());
  FUZZ_CHECK(j.contains("title") && j["title"].is_string());
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // route_table(4) with no actors: a request that passes validation is dropped by the empty
  // handle and must still be answered (503) when its completion is destroyed.
  static auto gate = std::make_shared<api::shard_gate>(shards, 1 << 20);
  static const api::routes routes{options(), std::make_shared<api::route_table>(shards), gate};
  std::optional<http::response> out;
  routes(make_request(as_text(data, size)), std::make_shared<capture>(out));
  FUZZ_CHECK(out);
  check_response(*out);
  // No request keeps a shard-gate slot once answered.
  for (std::size_t i = 0; i < shards; ++i)
    FUZZ_CHECK(gate->in_flight(i) == 0);
  return 0;
}
