// Fuzz target: PUT /v1/sessions/{id} bodies (model::parse_put_body) and If-Match / If-None-Match
// values (model::parse_etag_condition), both fed the same bytes.
#include "fuzz/fuzz_check.hpp"
#include "model/session.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>

namespace {

using sessiond::fuzz::as_text;
namespace model = sessiond::model;

bool is_problem_type(const std::string& type) {
  return type.rfind("urn:sessiond:problem:", 0) == 0;
}

/// A body is either refused with a 4xx problem, or yields a valid user id, a compact JSON object
/// within the limit, and a TTL within bounds.
void check_put_body(std::string_view text) {
  // A small data limit so that the 413 path is reached by small inputs too.
  const model::body_limits lim{512, 86400};
  model::put_body out;
  if (auto err = model::parse_put_body(text, lim, out)) {
    FUZZ_CHECK(err->status == 400 || err->status == 413 || err->status == 422);
    FUZZ_CHECK(is_problem_type(err->type));
    FUZZ_CHECK(!err->title.empty() && !err->detail.empty());
    return;
  }
  FUZZ_CHECK(model::valid_id(out.user_id));
  FUZZ_CHECK(out.data.size() <= lim.max_data_bytes);
  auto data = nlohmann::json::parse(out.data, nullptr, false);
  FUZZ_CHECK(!data.is_discarded() && data.is_object());
  FUZZ_CHECK(data.dump() == out.data); // stored form is already compact and canonical
  if (out.ttl_s)
    FUZZ_CHECK(*out.ttl_s >= 1 && *out.ttl_s <= lim.max_ttl_s);
}

/// `*` or one strong tag with a version >= 1; whatever version is accepted prints back as a tag
/// that parses to the same version.
void check_etag(std::string_view text, const std::uint8_t* data, std::size_t size) {
  if (auto cond = model::parse_etag_condition(text)) {
    if (cond->any) {
      auto first = text.find_first_not_of(" \t");
      auto last = text.find_last_not_of(" \t");
      FUZZ_CHECK(first != std::string_view::npos && first == last && text[first] == '*');
    } else {
      FUZZ_CHECK(cond->version >= 1);
      auto again = model::parse_etag_condition(model::etag(cond->version));
      FUZZ_CHECK(again && !again->any && again->version == cond->version);
    }
  }
  // Every version the engine can hand out round-trips through etag().
  std::int64_t v = 0;
  if (size > 0)
    std::memcpy(&v, data, std::min(size, sizeof v));
  if (v >= 1) {
    auto back = model::parse_etag_condition(model::etag(v));
    FUZZ_CHECK(back && !back->any && back->version == v);
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto text = as_text(data, size);
  check_put_body(text);
  check_etag(text, data, size);
  return 0;
}
