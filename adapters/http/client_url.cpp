// http::client's URL parsing (parse_http_url) and error names: what client.cpp sends to.
#include "adapters/http/client.hpp"

#include "model/text.hpp"

#include <boost/asio/ip/address_v6.hpp>
#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <string>

namespace sessiond::http {

const char* to_string(client_errc e) {
  switch (e) {
  case client_errc::ok:
    return "ok";
  case client_errc::bad_url:
    return "bad_url";
  case client_errc::resolve_failed:
    return "resolve_failed";
  case client_errc::connect_failed:
    return "connect_failed";
  case client_errc::tls_failed:
    return "tls_failed";
  case client_errc::timeout:
    return "timeout";
  case client_errc::connection_lost:
    return "connection_lost";
  case client_errc::response_too_large:
    return "response_too_large";
  case client_errc::protocol:
    return "protocol";
  case client_errc::overloaded:
    return "overloaded";
  case client_errc::closed:
    return "closed";
  }
  return "unknown";
}

namespace {

using model::percent_decode;
using model::starts_with_nocase;

namespace asio = boost::asio;
using error_code = boost::system::error_code;

bool fail(std::string& error, std::string what) {
  error = std::move(what);
  return false;
}

// ---- URL ---------------------------------------------------------------------------------

std::string base64(std::string_view in) {
  std::string out(4 * ((in.size() + 2) / 3) + 1, '\0'); // EVP_EncodeBlock adds a NUL
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(in.data()),
                          static_cast<int>(in.size()));
  out.resize(static_cast<std::size_t>(std::max(n, 0)));
  return out;
}

/// user:password (a user alone sends an empty password, as curl does) → Basic credentials.
bool parse_userinfo(std::string_view info, parsed_url& out, std::string& error) {
  if (info.empty())
    return true;
  auto colon = info.find(':');
  std::string user, password;
  if (!percent_decode(info.substr(0, colon), user) ||
      (colon != std::string_view::npos && !percent_decode(info.substr(colon + 1), password)))
    return fail(error, "bad %-escape in the URL's user or password");
  out.authorization = "Basic " + base64(user + ":" + password);
  return true;
}

bool parse_port(std::string_view s, std::uint16_t& port) {
  if (s.empty() || s.size() > 5)
    return false;
  unsigned v = 0;
  for (char c : s) {
    if (c < '0' || c > '9')
      return false;
    v = v * 10 + static_cast<unsigned>(c - '0');
  }
  if (v == 0 || v > 65535)
    return false;
  port = static_cast<std::uint16_t>(v);
  return true;
}

bool reg_name_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_' ||
         c == '~';
}

/// host, host:port, [v6] or [v6]:port; an absent port is the scheme's.
bool parse_host_port(std::string_view hp, parsed_url& out, std::string& error) {
  model::authority at;
  if (!model::split_authority(hp, at, error))
    return false;
  auto host = at.host;
  auto port = at.port;
  bool has_port = at.has_port;
  if (at.bracketed) {
    error_code ec;
    asio::ip::make_address_v6(std::string(host), ec);
    if (ec)
      return fail(error, "bad IPv6 address [" + std::string(host) + "] in the URL");
  } else if (!std::all_of(host.begin(), host.end(), reg_name_char)) {
    return fail(error, "bad host name '" + std::string(host) + "' in the URL");
  }
  out.host.assign(host.begin(), host.end());
  std::transform(out.host.begin(), out.host.end(), out.host.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (!has_port) {
    out.port = out.tls ? 443 : 80;
    return true;
  }
  return parse_port(port, out.port) || fail(error, "bad port in the URL (1-65535)");
}

/// Path and query go on the request line as they are, so they must be sent %-encoded.
bool check_target(std::string_view target, std::string& error) {
  for (char c : target) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f)
      return fail(error, "the URL's path or query has a space, control or non-ASCII byte; "
                         "%-encode it");
  }
  return true;
}

} // namespace

bool parse_http_url(std::string_view url, parsed_url& out, std::string& error) {
  bool tls = starts_with_nocase(url, "https://");
  if (!tls && !starts_with_nocase(url, "http://"))
    return fail(error, "URL must start with http:// or https://");
  auto rest = url.substr(tls ? 8 : 7);
  rest = rest.substr(0, rest.find('#')); // the fragment is not sent
  auto end = rest.find_first_of("/?");
  auto authority = rest.substr(0, end);
  auto target = end == std::string_view::npos ? std::string_view{} : rest.substr(end);
  parsed_url parsed;
  parsed.tls = tls;
  auto at = authority.rfind('@');
  if (at != std::string_view::npos) {
    if (!parse_userinfo(authority.substr(0, at), parsed, error))
      return false;
    authority = authority.substr(at + 1);
  }
  if (!parse_host_port(authority, parsed, error) || !check_target(target, error))
    return false;
  parsed.target = target.empty() || target.front() == '?' ? "/" : "";
  parsed.target.append(target.begin(), target.end());
  out = std::move(parsed);
  return true;
}

} // namespace sessiond::http
