// Fuzz target: JSON merge patch (RFC 7396) of session data, model::apply_merge_patch and
// model::check_merge_patch. Input: stored data, a 0 byte, then the patch.
#include "fuzz/fuzz_check.hpp"
#include "model/merge_patch.hpp"

#include <nlohmann/json.hpp>

namespace {

using sessiond::fuzz::as_text;
namespace model = sessiond::model;

// Small, so that the 413 path is reached by small inputs too.
constexpr std::size_t max_data_bytes = 1024;

/// The engine only stores validated objects, in compact form: anything else becomes "{}".
std::string stored_form(std::string_view text) {
  auto doc = nlohmann::json::parse(text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object())
    return "{}";
  return doc.dump();
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* bytes, std::size_t size) {
  auto input = as_text(bytes, size);
  auto zero = input.find('\0');
  const std::string data =
      stored_form(zero == std::string_view::npos ? "{}" : input.substr(0, zero));
  const auto patch = zero == std::string_view::npos ? input : input.substr(zero + 1);

  std::string out;
  auto err = model::apply_merge_patch(data, patch, max_data_bytes, out);
  // The API checks a patch before queuing it; the shard applies it. They must agree on 400/422.
  auto checked = model::check_merge_patch(patch);
  if (checked) {
    FUZZ_CHECK(checked->status == 400 || checked->status == 422);
    FUZZ_CHECK(err && err->status == checked->status);
  } else {
    FUZZ_CHECK(!err || err->status == 413);
  }
  if (err) {
    FUZZ_CHECK(err->type.rfind("urn:sessiond:problem:", 0) == 0 && !err->detail.empty());
    return 0;
  }
  FUZZ_CHECK(out.size() <= max_data_bytes);
  auto result = nlohmann::json::parse(out, nullptr, false);
  FUZZ_CHECK(!result.is_discarded() && result.is_object());
  FUZZ_CHECK(result.dump() == out);
  // A merge patch is idempotent: applying it again to its own result changes nothing.
  std::string again;
  FUZZ_CHECK(!model::apply_merge_patch(out, patch, max_data_bytes, again));
  FUZZ_CHECK(again == out);
  return 0;
}
