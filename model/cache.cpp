// See cache.hpp.
#include "model/cache.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

namespace sessiond::model {

namespace {

bool key_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == ':' || c == '@' || c == '-';
}

bool parse_int(std::string_view s, std::int64_t& out) {
  if (s.empty())
    return false;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc{} && end == s.data() + s.size();
}

/// The next space-separated field of `s` from `pos`.
std::string_view field(std::string_view s, std::size_t& pos) {
  auto end = s.find(' ', pos);
  auto f = s.substr(pos, end == std::string_view::npos ? std::string_view::npos : end - pos);
  pos = end == std::string_view::npos ? s.size() : end + 1;
  return f;
}

} // namespace

bool valid_cache_key(std::string_view key) {
  return !key.empty() && key.size() <= 256 && std::all_of(key.begin(), key.end(), key_char);
}

bool valid_cache_namespace(std::string_view ns) {
  return !ns.empty() && ns.size() <= 64 && std::all_of(ns.begin(), ns.end(), [](char c) {
    return key_char(c) && c != ':' && c != '@';
  });
}

bool valid_cache_prefix(std::string_view prefix) {
  return prefix.size() <= 256 && std::all_of(prefix.begin(), prefix.end(), key_char);
}

std::string encode(const cache_entry& e) {
  std::string out = "1 ";
  out += e.negative ? 'n' : 'v';
  out += ' ';
  out += std::to_string(e.stored_ms);
  out += ' ';
  out += std::to_string(e.fresh_until_ms);
  out += ' ';
  out += std::to_string(e.delta_ms);
  out += ' ';
  out += e.etag;
  out += '\n';
  out += e.value;
  return out;
}

bool decode(std::string_view stored, cache_entry& out) {
  auto nl = stored.find('\n');
  if (nl == std::string_view::npos)
    return false;
  auto head = stored.substr(0, nl);
  std::size_t pos = 0;
  if (field(head, pos) != "1")
    return false;
  auto kind = field(head, pos);
  if (kind != "n" && kind != "v")
    return false;
  cache_entry e;
  e.negative = kind == "n";
  if (!parse_int(field(head, pos), e.stored_ms) || !parse_int(field(head, pos), e.fresh_until_ms) ||
      !parse_int(field(head, pos), e.delta_ms))
    return false;
  e.etag = std::string(field(head, pos));
  if (pos != head.size() || (e.etag.empty() && !e.negative))
    return false;
  e.value = std::string(stored.substr(nl + 1));
  if (e.negative != e.value.empty())
    return false;
  out = std::move(e);
  return true;
}

std::string cache_etag(std::string_view value) {
  std::uint64_t h = 14695981039346656037ull;
  for (unsigned char c : value) {
    h ^= c;
    h *= 1099511628211ull;
  }
  char buf[24];
  std::snprintf(buf, sizeof buf, "\"%016llx\"", static_cast<unsigned long long>(h));
  return buf;
}

std::int64_t jittered_ttl_ms(std::int64_t ttl_ms, double jitter_ratio, double u) {
  auto spread = static_cast<double>(ttl_ms) * std::clamp(jitter_ratio, 0.0, 1.0);
  auto ttl =
      static_cast<std::int64_t>(static_cast<double>(ttl_ms) - spread * std::clamp(u, 0.0, 1.0));
  return std::max<std::int64_t>(1, ttl);
}

bool refresh_early(std::int64_t now_ms, const cache_entry& e, double beta, double u) {
  if (beta <= 0 || e.delta_ms <= 0 || u <= 0 || u > 1)
    return false;
  auto early = -static_cast<double>(e.delta_ms) * beta * std::log(u);
  return static_cast<double>(now_ms) + early >= static_cast<double>(e.fresh_until_ms);
}

std::string cache_status(cache_outcome o, const cache_entry& e, std::int64_t now_ms) {
  auto left = e.fresh_until_ms - now_ms;
  // Whole seconds, rounded towards minus infinity, so a value 1 ms stale says ttl=-1.
  auto ttl_s = left >= 0 ? left / 1000 : -((-left + 999) / 1000);
  std::string out = "sessiond; ";
  switch (o) {
  case cache_outcome::hit:
    out += "hit";
    break;
  case cache_outcome::near_hit:
    out += "hit; detail=near";
    break;
  case cache_outcome::miss:
    out += "fwd=miss";
    break;
  case cache_outcome::stale:
    out += "fwd=stale";
    break;
  }
  out += "; ttl=" + std::to_string(ttl_s);
  return out;
}

std::int64_t cache_age_s(const cache_entry& e, std::int64_t now_ms) {
  return std::max<std::int64_t>(0, (now_ms - e.stored_ms) / 1000);
}

} // namespace sessiond::model
