// The session record and its JSON form, the request-body rules, and entity tags.
// Pure logic: no I/O, no actors; every function here is unit-tested.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sessiond::model {

/// Session and user ids: [A-Za-z0-9._:-]{1,128}.
bool valid_id(std::string_view id);

enum class status { active, revoked };
const char* to_string(status s);

/// One session as sessiond stores it. `data` is the compact JSON text of an object.
struct session {
  std::string id;
  std::string user_id;
  std::string data = "{}";
  std::int64_t version = 0;
  status state = status::active;
  std::int64_t created_ms = 0;
  std::int64_t last_activity_ms = 0;
  std::int64_t expires_ms = 0;
  std::int64_t ttl_s = 0;    ///< this session's idle TTL
  std::int64_t touch_ms = 0; ///< last time the idle TTL was slid
};

/// The API representation: {"id","user_id","data","version","status","created_at",
/// "last_activity_at","expires_at","ttl_s"} with RFC 3339 UTC times in milliseconds.
std::string to_json(const session& s);
/// Appends to_json(s) to out (no intermediate string).
void append_json(std::string& out, const session& s);
/// 2026-11-21T10:00:00.123Z
std::string rfc3339_ms(std::int64_t epoch_ms);

/// A validation failure of client input: becomes a 4xx problem+json.
struct input_error {
  unsigned status;  ///< 400, 413 or 422
  std::string type; ///< urn:sessiond:problem:…
  std::string title;
  std::string detail;
};

/// The body of PUT /v1/sessions/{id}.
struct put_body {
  std::string user_id;
  std::string data; ///< compact JSON of an object
  std::optional<std::int64_t> ttl_s;
};

struct body_limits {
  std::size_t max_data_bytes = 65536;
  std::int64_t max_ttl_s = 31536000;
};

/// Deepest nesting of arrays and objects accepted in a request body. Serializing, copying and
/// merge-patching JSON recurse once per level, so deeper input could overflow the thread's stack.
constexpr std::size_t max_json_depth = 128;

/// False when arrays and objects in `text` nest deeper than `max_depth` (string contents are
/// skipped). A cheap scan to run before parsing; it does not validate the JSON.
bool json_depth_within(std::string_view text, std::size_t max_depth = max_json_depth);

/// True when a string in the JSON `text` holds the NUL character (the escape \u0000; a raw NUL
/// is not valid JSON). PostgreSQL's jsonb cannot store it, so such data is refused at the API
/// rather than accepted into Redis and then failing its write-behind batch.
bool json_has_nul(std::string_view text);

/// Parses and checks a PUT body. Returns the error instead of throwing.
std::optional<input_error> parse_put_body(std::string_view text, const body_limits& lim,
                                          put_body& out);

/// A parsed precondition header. `any` is `*`; otherwise `version` holds the tag.
struct etag_condition {
  bool any = false;
  std::int64_t version = 0;
};

/// Parses `If-Match` / `If-None-Match`: `*` or one strong tag `"<version>"`.
/// Returns nullopt when malformed (weak tags, lists, garbage).
std::optional<etag_condition> parse_etag_condition(std::string_view value);
/// `"<version>"`
std::string etag(std::int64_t version);

} // namespace sessiond::model
