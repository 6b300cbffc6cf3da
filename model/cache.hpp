// The cache's pure rules (docs/cache.md): names and keys, how an entry is stored in Redis, TTL
// jitter, XFetch's early refresh, and the Cache-Status and Age a read answers with.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace sessiond::model {

/// A cache key: [A-Za-z0-9._:@-]{1,256}.
bool valid_cache_key(std::string_view key);
/// A namespace name: [A-Za-z0-9._-]{1,64} (no ':', so "{ns:key}" splits at its first ':').
bool valid_cache_namespace(std::string_view ns);
/// A prefix for invalidation: what a key may hold, 0..256 characters (empty: every key).
bool valid_cache_prefix(std::string_view prefix);

/// One cached value as Redis holds it. A negative entry remembers that the loader found no row.
struct cache_entry {
  bool negative = false;
  std::string value;               ///< compact JSON; empty when negative
  std::int64_t stored_ms = 0;      ///< when it was written (Age)
  std::int64_t fresh_until_ms = 0; ///< its TTL ends here; past it, stale
  std::int64_t delta_ms = 0;       ///< how long its load took (XFetch's delta); 0 for a PUT
  std::string etag;                ///< a strong entity tag of the value, quoted
};

/// `1 <n|v> stored fresh_until delta etag\n<value>`: a header line, then the JSON as it is.
std::string encode(const cache_entry& e);
/// False on anything that is not what encode() wrote.
bool decode(std::string_view stored, cache_entry& out);

/// "\"<16 hex digits>\"": FNV-1a 64 of the value.
std::string cache_etag(std::string_view value);

/// A TTL drawn uniformly from [ttl_ms * (1 - jitter_ratio), ttl_ms], given u in [0, 1), never
/// below 1 ms: keys written together do not expire together.
std::int64_t jittered_ttl_ms(std::int64_t ttl_ms, double jitter_ratio, double u);

/// XFetch (Vattani et al., "Optimal probabilistic cache stampede prevention"): a hit at `now_ms`
/// reloads early when now - delta * beta * ln(u) >= fresh_until, for u in (0, 1]. beta 0: never.
bool refresh_early(std::int64_t now_ms, const cache_entry& e, double beta, double u);

/// How a read was answered, as RFC 9211 Cache-Status parameters after "sessiond; ".
enum class cache_outcome { hit, near_hit, miss, stale };
/// E.g. `sessiond; hit; ttl=42`, `sessiond; hit; detail=near`, `sessiond; fwd=miss; ttl=900`,
/// `sessiond; fwd=stale; ttl=-5` (ttl: seconds of freshness left, negative when stale).
std::string cache_status(cache_outcome o, const cache_entry& e, std::int64_t now_ms);
/// Whole seconds since the value was stored (HTTP Age), never negative.
std::int64_t cache_age_s(const cache_entry& e, std::int64_t now_ms);

} // namespace sessiond::model
