// See text.hpp.
#include "model/text.hpp"

#include <algorithm>

namespace sessiond::model {

namespace {

char lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  c = lower(c);
  return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

} // namespace

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) { return lower(x) == lower(y); });
}

bool starts_with_nocase(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

bool split_authority(std::string_view hp, authority& out, std::string& error) {
  out = {};
  out.host = hp;
  if (!hp.empty() && hp.front() == '[') {
    auto close = hp.find(']');
    if (close == std::string_view::npos) {
      error = "unclosed [ in the URL's host";
      return false;
    }
    out.host = hp.substr(1, close - 1);
    out.bracketed = true;
    auto rest = hp.substr(close + 1);
    if (!rest.empty() && rest.front() != ':') {
      error = "unexpected text after ] in the URL's host";
      return false;
    }
    out.has_port = !rest.empty();
    out.port = out.has_port ? rest.substr(1) : rest;
  } else if (auto colon = hp.find(':'); colon != std::string_view::npos) {
    out.host = hp.substr(0, colon);
    out.port = hp.substr(colon + 1);
    out.has_port = true;
  }
  if (out.host.empty()) {
    error = "the URL has no host";
    return false;
  }
  return true;
}

bool percent_decode(std::string_view in, std::string& out) {
  out.clear();
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out += in[i];
      continue;
    }
    if (i + 2 >= in.size())
      return false;
    int hi = hex_value(in[i + 1]), lo = hex_value(in[i + 2]);
    if (hi < 0 || lo < 0)
      return false;
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return true;
}

} // namespace sessiond::model
