// Session JSON rendering, PUT-body validation and entity-tag parsing.
#include "model/session.hpp"

#include <nlohmann/json.hpp>

#include <charconv>

namespace sessiond::model {

namespace {

bool id_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == ':' || c == '-';
}

// Ids are restricted to characters that need no JSON escaping, so they are appended raw.
void append_string_field(std::string& out, const char* key, std::string_view value) {
  out += '"';
  out += key;
  out += "\":\"";
  out += value;
  out += '"';
}

void append_int_field(std::string& out, const char* key, std::int64_t value) {
  out += '"';
  out += key;
  out += "\":";
  out += std::to_string(value);
}

input_error bad_body(std::string detail) {
  return {400, "urn:sessiond:problem:invalid-body", "Invalid request body", std::move(detail)};
}

} // namespace

bool valid_id(std::string_view id) {
  if (id.empty() || id.size() > 128)
    return false;
  for (char c : id)
    if (!id_char(c))
      return false;
  return true;
}

const char* to_string(status s) {
  switch (s) {
  case status::active:
    return "ACTIVE";
  case status::revoked:
    return "REVOKED";
  }
  return "UNKNOWN";
}

std::string rfc3339_ms(std::int64_t epoch_ms) {
  // Hand-rolled (civil-from-days, H. Hinnant's algorithm): this runs three times per response,
  // and snprintf + gmtime_r showed up in the hot-path profile.
  std::int64_t days = epoch_ms / 86400000;
  std::int64_t ms_of_day = epoch_ms % 86400000;
  if (ms_of_day < 0) {
    ms_of_day += 86400000;
    --days;
  }
  days += 719468;
  const std::int64_t era = (days >= 0 ? days : days - 146096) / 146097;
  const auto doe = static_cast<unsigned>(days - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  const unsigned day = doy - (153 * mp + 2) / 5 + 1;
  const unsigned month = mp < 10 ? mp + 3 : mp - 9;
  const std::int64_t year = static_cast<std::int64_t>(yoe) + era * 400 + (month <= 2);
  char buf[25] = "0000-00-00T00:00:00.000Z";
  auto put = [&buf](int pos, std::int64_t value, int width) {
    for (int i = width - 1; i >= 0; --i, value /= 10)
      buf[pos + i] = static_cast<char>('0' + value % 10);
  };
  put(0, year, 4);
  put(5, month, 2);
  put(8, day, 2);
  put(11, ms_of_day / 3600000, 2);
  put(14, ms_of_day / 60000 % 60, 2);
  put(17, ms_of_day / 1000 % 60, 2);
  put(20, ms_of_day % 1000, 3);
  return std::string(buf, 24);
}

void append_json(std::string& out, const session& s) {
  out += '{';
  append_string_field(out, "id", s.id);
  out += ',';
  append_string_field(out, "user_id", s.user_id);
  out += ",\"data\":";
  out += s.data;
  out += ',';
  append_int_field(out, "version", s.version);
  out += ',';
  append_string_field(out, "status", to_string(s.state));
  out += ',';
  append_string_field(out, "created_at", rfc3339_ms(s.created_ms));
  out += ',';
  append_string_field(out, "last_activity_at", rfc3339_ms(s.last_activity_ms));
  out += ',';
  append_string_field(out, "expires_at", rfc3339_ms(s.expires_ms));
  out += ',';
  append_int_field(out, "ttl_s", s.ttl_s);
  out += '}';
}

std::string to_json(const session& s) {
  std::string out;
  out.reserve(256 + s.data.size());
  append_json(out, s);
  return out;
}

bool json_depth_within(std::string_view text, std::size_t max_depth) {
  std::size_t depth = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth)
        return false;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return true;
}

bool json_has_nul(std::string_view text) {
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (!in_string) {
      in_string = c == '"';
    } else if (c == '"') {
      in_string = false;
    } else if (c == '\\') {
      if (text.substr(i + 1, 5) == "u0000")
        return true;
      ++i;
    }
  }
  return false;
}

std::optional<input_error> parse_put_body(std::string_view text, const body_limits& lim,
                                          put_body& out) {
  if (!json_depth_within(text))
    return input_error{400, "urn:sessiond:problem:invalid-json", "JSON nested too deeply",
                       "the request body nests arrays and objects deeper than " +
                           std::to_string(max_json_depth) + " levels"};
  auto doc = nlohmann::json::parse(text.begin(), text.end(), nullptr, false);
  if (doc.is_discarded())
    return input_error{400, "urn:sessiond:problem:invalid-json", "Invalid JSON",
                       "the request body is not valid JSON"};
  if (!doc.is_object())
    return bad_body("the body must be a JSON object with \"user_id\" and \"data\"");
  for (auto& [key, value] : doc.items())
    if (key != "user_id" && key != "data" && key != "ttl_s")
      return bad_body("unknown field \"" + key + "\" (allowed: user_id, data, ttl_s)");
  auto uid = doc.find("user_id");
  if (uid == doc.end() || !uid->is_string())
    return bad_body("\"user_id\" is required and must be a string");
  if (!valid_id(uid->get_ref<const std::string&>()))
    return bad_body("\"user_id\" must match [A-Za-z0-9._:-]{1,128}");
  auto data = doc.find("data");
  if (data == doc.end() || !data->is_object())
    return bad_body("\"data\" is required and must be a JSON object");
  if (json_has_nul(text))
    return bad_body("strings cannot hold the NUL character (\\u0000): PostgreSQL cannot store it");
  if (auto ttl = doc.find("ttl_s"); ttl != doc.end()) {
    if (!ttl->is_number_integer() || ttl->get<std::int64_t>() < 1 ||
        ttl->get<std::int64_t>() > lim.max_ttl_s)
      return bad_body("\"ttl_s\" must be an integer from 1 to " + std::to_string(lim.max_ttl_s));
    out.ttl_s = ttl->get<std::int64_t>();
  }
  out.user_id = uid->get<std::string>();
  out.data = data->dump();
  if (out.data.size() > lim.max_data_bytes)
    return input_error{413, "urn:sessiond:problem:data-too-large", "Session data too large",
                       "\"data\" is " + std::to_string(out.data.size()) +
                           " bytes serialized; the limit is " + std::to_string(lim.max_data_bytes)};
  return std::nullopt;
}

std::optional<etag_condition> parse_etag_condition(std::string_view value) {
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
    value.remove_prefix(1);
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t'))
    value.remove_suffix(1);
  if (value == "*")
    return etag_condition{true, 0};
  if (value.size() < 3 || value.size() > 21 || value.front() != '"' || value.back() != '"')
    return std::nullopt;
  auto digits = value.substr(1, value.size() - 2);
  std::int64_t v = 0;
  auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
  if (ec != std::errc{} || ptr != digits.data() + digits.size() || v < 1)
    return std::nullopt;
  return etag_condition{false, v};
}

std::string etag(std::int64_t version) {
  return "\"" + std::to_string(version) + "\"";
}

} // namespace sessiond::model
