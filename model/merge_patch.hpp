// JSON merge patch (RFC 7396) of a session's `data`, on nlohmann::json's implementation.
#pragma once

#include "model/session.hpp"

#include <optional>
#include <string>
#include <string_view>

namespace sessiond::model {

/// Applies `patch_text` to the JSON object `data_text` and writes the compact result to `out`.
/// Errors: the patch is not JSON (400), the result is not an object (422), or it is larger than
/// max_data_bytes (413). `data_text` is trusted (it was validated when stored).
std::optional<input_error> apply_merge_patch(std::string_view data_text,
                                             std::string_view patch_text,
                                             std::size_t max_data_bytes, std::string& out);

/// Checks that `patch_text` is JSON that may patch an object (any JSON object; a non-object
/// would replace `data` with a non-object, which sessiond refuses with 422).
std::optional<input_error> check_merge_patch(std::string_view patch_text);

} // namespace sessiond::model
