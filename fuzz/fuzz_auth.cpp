// Fuzz target: what authentication reads from outside: a tokens file (auth::parse_tokens) and a
// request's target and Authorization header (api::bearer_token, api::auth_gate::admit).
//
// Input: byte 0: bit 0 protect_metrics, bits 1-2 the client address (one of four); then the
// target and the Authorization value, each up to a '\n'; the rest is a tokens file.
#include "adapters/auth/tokens.hpp"
#include "adapters/metrics/registry.hpp"
#include "api/auth_gate.hpp"
#include "fuzz/fuzz_check.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <optional>

namespace {

using sessiond::fuzz::as_text;
namespace api = sessiond::api;
namespace auth = sessiond::auth;
namespace http = sessiond::http;

const std::string fixed_api = "fuzz-api-token-0123456789";
const std::string fixed_admin = "fuzz-admin-token-0123456789";

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

std::string next_line(std::string_view& in) {
  auto nl = in.find('\n');
  std::string line(in.substr(0, nl));
  in.remove_prefix(nl == std::string_view::npos ? in.size() : nl + 1);
  return line;
}

/// Every accepted token obeys the file rules, once each; a refusal returns nothing.
std::vector<std::string> check_parse(std::string_view text) {
  auth::parse_error err;
  auto tokens = auth::parse_tokens(text, err);
  if (err.code != auth::errc::ok) {
    FUZZ_CHECK(tokens.empty());
    return {};
  }
  FUZZ_CHECK(!tokens.empty());
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    const auto& t = tokens[i];
    FUZZ_CHECK(t.size() >= auth::min_token_chars && t.size() <= auth::max_token_chars);
    FUZZ_CHECK(t.find_first_of(" \t\r\n\f\v") == std::string::npos);
    FUZZ_CHECK(t.front() != '#' && t.front() != '=');
    FUZZ_CHECK(std::count(tokens.begin(), tokens.end(), t) == 1);
  }
  return tokens;
}

void check_answer(const std::optional<http::response>& out, bool admitted) {
  FUZZ_CHECK(admitted == !out.has_value());
  if (admitted)
    return;
  FUZZ_CHECK(out->status == 401 || out->status == 403 || out->status == 429);
  FUZZ_CHECK(out->content_type == "application/problem+json");
  auto j = nlohmann::json::parse(out->body, nullptr, false);
  FUZZ_CHECK(j.is_object() && j["status"] == out->status);
  bool www = std::any_of(out->headers.begin(), out->headers.end(),
                         [](const auto& h) { return h.first == "WWW-Authenticate"; });
  FUZZ_CHECK(www == (out->status != 429));
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static sessiond::metrics::Registry registry;
  static const std::array<const char*, 4> addresses = {"127.0.0.1", "::1", "2001:db8::1", ""};
  std::string_view in = as_text(data, size);
  const auto selector = static_cast<unsigned char>(in.empty() ? 0 : in.front());
  in.remove_prefix(in.empty() ? 0 : 1);
  http::request req;
  req.verb = http::method::get;
  req.target = next_line(in);
  req.authorization = next_line(in);
  req.remote_address = addresses[(selector >> 1) & 3u];
  auto file_tokens = check_parse(in);

  auto parsed = api::bearer_token(req.authorization);
  FUZZ_CHECK(parsed.find_first_of(" \t") != 0 && (parsed.empty() || parsed.back() != ' '));

  std::vector<std::string> api_tokens = file_tokens;
  api_tokens.erase(std::remove(api_tokens.begin(), api_tokens.end(), fixed_admin),
                   api_tokens.end());
  api_tokens.push_back(fixed_api);
  api::auth_options o;
  o.protect_metrics = (selector & 1u) != 0;
  o.now_ms = [] { return std::int64_t{0}; };
  api::auth_gate gate(
      std::make_shared<const auth::token_set>(api_tokens, std::vector<std::string>{fixed_admin}),
      std::move(o), registry);
  std::string_view path = req.target;
  path = path.substr(0, path.find('?'));
  std::optional<http::response> out;
  bool admitted = gate.admit(req, path, std::make_shared<capture>(out));
  check_answer(out, admitted);
  // Admitted exactly when the path is open or the token's role suffices.
  auto need = api::access_for(path, (selector & 1u) != 0);
  auto role = gate.tokens()->match(parsed);
  bool expected =
      need == api::access::open || (!parsed.empty() && role != auth::role::none &&
                                    (need == api::access::token || role == auth::role::admin));
  FUZZ_CHECK(admitted == expected);
  return 0;
}
