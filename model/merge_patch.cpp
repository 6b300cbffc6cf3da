// RFC 7396 merge patch over nlohmann::json::merge_patch, with sessiond's rules on the result.
#include "model/merge_patch.hpp"

#include <nlohmann/json.hpp>

namespace sessiond::model {

namespace {

input_error not_json() {
  return {400, "urn:sessiond:problem:invalid-json", "Invalid JSON",
          "the merge patch is not valid JSON"};
}

input_error too_deep() {
  return {400, "urn:sessiond:problem:invalid-json", "JSON nested too deeply",
          "the merge patch nests arrays and objects deeper than " + std::to_string(max_json_depth) +
              " levels"};
}

input_error not_object() {
  return {422, "urn:sessiond:problem:invalid-patch", "Patch does not keep data an object",
          "a merge patch of \"data\" must be a JSON object, so that data stays an object"};
}

/// Parses a merge patch of `data` into `patch`: bounded depth, valid JSON, an object.
std::optional<input_error> parse_patch(std::string_view patch_text, nlohmann::json& patch) {
  if (!json_depth_within(patch_text))
    return too_deep();
  patch = nlohmann::json::parse(patch_text.begin(), patch_text.end(), nullptr, false);
  if (patch.is_discarded())
    return not_json();
  if (!patch.is_object())
    return not_object();
  if (json_has_nul(patch_text))
    return input_error{400, "urn:sessiond:problem:invalid-body", "Invalid request body",
                       "strings cannot hold the NUL character (\\u0000): PostgreSQL cannot "
                       "store it"};
  return std::nullopt;
}

} // namespace

std::optional<input_error> check_merge_patch(std::string_view patch_text) {
  nlohmann::json patch;
  return parse_patch(patch_text, patch);
}

std::optional<input_error> apply_merge_patch(std::string_view data_text,
                                             std::string_view patch_text,
                                             std::size_t max_data_bytes, std::string& out) {
  nlohmann::json patch;
  if (auto err = parse_patch(patch_text, patch))
    return err;
  auto target = nlohmann::json::parse(data_text.begin(), data_text.end(), nullptr, false);
  if (target.is_discarded() || !target.is_object())
    target = nlohmann::json::object();
  target.merge_patch(patch);
  out = target.dump();
  if (out.size() > max_data_bytes)
    return input_error{413, "urn:sessiond:problem:data-too-large", "Session data too large",
                       "the patched \"data\" would be " + std::to_string(out.size()) +
                           " bytes serialized; the limit is " + std::to_string(max_data_bytes)};
  return std::nullopt;
}

} // namespace sessiond::model
