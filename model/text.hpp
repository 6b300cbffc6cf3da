// Small ASCII text helpers the adapters share: case-insensitive comparison (HTTP header names,
// URL schemes) and %XX decoding (user names and passwords in URLs).
#pragma once

#include <string>
#include <string_view>

namespace sessiond::model {

/// Equal but for ASCII letter case.
bool iequals(std::string_view a, std::string_view b);

/// `s` begins with `prefix` but for ASCII letter case.
bool starts_with_nocase(std::string_view s, std::string_view prefix);

/// A URL's "host", "host:port", "[v6]" or "[v6]:port", split. `host` has no brackets;
/// `bracketed` says it had them (an IPv6 literal); `port` is empty when absent.
struct authority {
  std::string_view host;
  std::string_view port;
  bool has_port = false;
  bool bracketed = false;
};

/// Splits `hp`; false with `error` set on an unclosed [, text after ] or an empty host.
bool split_authority(std::string_view hp, authority& out, std::string& error);

/// Decodes %XX escapes into `out`; false on a truncated or non-hex escape.
bool percent_decode(std::string_view in, std::string& out);

} // namespace sessiond::model
