// Lua sources of the session scripts (model/key_layout.hpp has the key layout). Each touches
// the keys of one slot only.
#include "actors/redis_scripts.hpp"

namespace sessiond::actors {

namespace {

// Condition argument: "" none, "n" If-None-Match: *, "a" If-Match: *, "m<N>" If-Match: "N".
constexpr const char* check_condition = R"lua(
local function cond_fails(cond, exists, v)
  if cond == '' then return false end
  if cond == 'n' then return exists end
  if cond == 'a' then return not exists end
  return (not exists) or v ~= string.sub(cond, 2)
end
-- Integers as text without going through '%.17g' (Redis formats Lua numbers given to
-- redis.call that way, which showed up as the top cost of the write path).
local function int(x) return string.format('%d', x) end
-- The key id of a sealed value (envelope v1: byte 0xE1, id length, id, …) when it is not among
-- `known` (space separated); nil for plaintext and for a known key.
local function sealed_key_missing(d, known)
  if not d or string.byte(d, 1) ~= 225 then return nil end
  local id = string.sub(d, 3, 2 + (string.byte(d, 2) or 0))
  if string.find(' ' .. (known or '') .. ' ', ' ' .. id .. ' ', 1, true) then return nil end
  return id
end
)lua";

// KEYS: session, dirty (one slot). ARGV: id, user_id, data, now_ms, ttl_s, max_lifetime_s,
// cond, expires_ms of a new session (min(now + ttl, now + max lifetime)), legacy ('1': a key of
// layout 1 may hold this session, so a missing key answers -409 instead of creating it),
// fields ('1': a failed condition on a session that exists answers {-412, version, fields}, the
// fields as HMGET v u st ca la ex ttl d t reads them, so a PATCH that lost a race merges again
// without another read), the key ids of the node's keyring (space separated): a stored value
// sealed under a key id not in that list is never replaced: {-500, version, key id} (restoring
// the key makes it readable again).
// Returns {200|201, version, created_ms, expires_ms, now_ms, index} or {code, version}; index is
// '1' when the user index must learn the session (created, or moved to another user). Only the
// fields that change are written: an update sets v la ex d t (u ttl when they changed).
constexpr const char* write_body = R"lua(
local cur = redis.call('HMGET', KEYS[1], 'v', 'st', 'ca', 'u', 'ttl', 'd')
local v = cur[1] or '0'
if cur[2] == 'R' then return {-410, v} end
local exists = cur[1] ~= false
if not exists and ARGV[9] == '1' then return {-409, v} end
if cond_fails(ARGV[7], exists, v) then
  if exists and ARGV[10] == '1' then
    return {-412, v, redis.call('HMGET', KEYS[1], 'v', 'u', 'st', 'ca', 'la', 'ex', 'ttl', 'd', 't')}
  end
  return {-412, v}
end
local missing = sealed_key_missing(cur[6], ARGV[11])
if missing then return {-500, v, missing} end
local ex = ARGV[8]
if not exists then
  redis.call('HSET', KEYS[1], 'v', '1', 'u', ARGV[2], 'st', 'A', 'ca', ARGV[4], 'la', ARGV[4],
             'ex', ex, 'ttl', ARGV[5], 'd', ARGV[3], 't', ARGV[4])
  redis.call('PEXPIREAT', KEYS[1], ex)
  redis.call('ZADD', KEYS[2], 'NX', ARGV[4], ARGV[1])
  return {201, '1', ARGV[4], ex, ARGV[4], '1'}
end
local ca = cur[3]
local cap = tonumber(ca) + tonumber(ARGV[6]) * 1000
if cap < tonumber(ex) then
  if cap <= tonumber(ARGV[4]) then return {-404, v} end
  ex = int(cap)
end
local nv = int(tonumber(v) + 1)
local moved = cur[4] ~= ARGV[2]
if moved then
  redis.call('HSET', KEYS[1], 'v', nv, 'u', ARGV[2], 'la', ARGV[4], 'ex', ex, 'ttl', ARGV[5],
             'd', ARGV[3], 't', ARGV[4])
elseif cur[5] ~= ARGV[5] then
  redis.call('HSET', KEYS[1], 'v', nv, 'la', ARGV[4], 'ex', ex, 'ttl', ARGV[5], 'd', ARGV[3],
             't', ARGV[4])
else
  redis.call('HSET', KEYS[1], 'v', nv, 'la', ARGV[4], 'ex', ex, 'd', ARGV[3], 't', ARGV[4])
end
redis.call('PEXPIREAT', KEYS[1], ex)
redis.call('ZADD', KEYS[2], 'NX', ARGV[4], ARGV[1])
return {200, nv, ca, ex, ARGV[4], moved and '1' or '0'}
)lua";

// KEYS: session, dirty (one slot). ARGV: id, now_ms, tombstone_ttl_ms, cond. Returns {204,
// version} or {code, version}. The user index keeps the id until a listing trims it.
constexpr const char* revoke_body = R"lua(
local cur = redis.call('HMGET', KEYS[1], 'v', 'st', 'u')
if not cur[1] or cur[2] == 'R' then return {-404, cur[1] or '0'} end
local v = cur[1]
if cond_fails(ARGV[4], true, v) then return {-412, v} end
local nv = int(tonumber(v) + 1)
redis.call('HSET', KEYS[1], 'v', nv, 'st', 'R', 'rv', ARGV[2], 'la', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('ZADD', KEYS[2], 'NX', ARGV[2], ARGV[1])
return {204, nv}
)lua";

// KEYS: session, dirty (one slot). ARGV: version, now_ms, new expires_ms, id,
// activity_interval_ms. Slides the TTL only if nobody wrote since the read. A pure touch marks
// the session dirty only when its activity crosses an activity interval boundary, so
// last_activity_at reaches PostgreSQL at most once per interval per session. Returns 1 or 0.
constexpr const char* touch_body = R"lua(
local cur = redis.call('HMGET', KEYS[1], 'v', 'st', 'la')
if cur[1] ~= ARGV[1] or cur[2] ~= 'A' then return 0 end
redis.call('HSET', KEYS[1], 'la', ARGV[2], 'ex', ARGV[3], 't', ARGV[2])
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
local every = tonumber(ARGV[5])
if math.floor(tonumber(ARGV[2]) / every) ~= math.floor(tonumber(cur[3] or '0') / every) then
  redis.call('ZADD', KEYS[2], 'NX', ARGV[2], ARGV[4])
end
return 1
)lua";

// KEYS: user index. ARGV: oldest created_ms a live session can have (now - max lifetime),
// max sessions. Trims the ids too old to be live and returns the others' ids, oldest first.
constexpr const char* list_index_body = R"lua(
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1])
return redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)
)lua";

// KEYS: user index. ARGV: created_ms, id, now_ms, keep_until_ms (created + max lifetime: no
// session of the index lives longer). Adds the id (NX: the score stays the creation time) and
// keeps the index at least until keep_until_ms. Returns 1.
constexpr const char* index_add_body = R"lua(
redis.call('ZADD', KEYS[1], 'NX', ARGV[1], ARGV[2])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[4]) - tonumber(ARGV[3]) then
  redis.call('PEXPIREAT', KEYS[1], ARGV[4])
end
return 1
)lua";

// KEYS: dirty. ARGV: session key prefix, count. The oldest `count` dirty ids with their fields:
// {id1, {v u st ca la ex ttl d t rv}, …}; a session whose key is gone has all fields nil.
constexpr const char* sync_read_body = R"lua(
local ids = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)
local out = {}
for _, id in ipairs(ids) do
  out[#out + 1] = id
  out[#out + 1] = redis.call('HMGET', ARGV[1] .. id, 'v', 'u', 'st', 'ca', 'la', 'ex', 'ttl', 'd',
                             't', 'rv')
end
return out
)lua";

// KEYS: dirty. ARGV: session key prefix, then (id, version, last activity) triples as read by
// sync_read ('' for a key that was gone). Clears a dirty mark only when the session is still
// exactly what was synced, so a write that landed meanwhile is synced next time. The marks go in
// one ZREM per 1,000 (each redis.call costs Lua about as much as the command itself). Returns the
// number of marks cleared.
constexpr const char* sync_ack_body = R"lua(
local done = {}
for i = 2, #ARGV, 3 do
  local f = redis.call('HMGET', ARGV[1] .. ARGV[i], 'v', 'la')
  if (f[1] or '') == ARGV[i + 1] and (f[2] or '') == ARGV[i + 2] then
    done[#done + 1] = ARGV[i]
  end
end
local n = 0
for i = 1, #done, 1000 do
  n = n + redis.call('ZREM', KEYS[1], unpack(done, i, math.min(i + 999, #done)))
end
return n
)lua";

// KEYS: dirty. ARGV: session key prefix (with the partition's tag), then (id, version, last
// activity) triples for rows PostgreSQL refused, already recorded in the rejected hash. Clears
// each mark only when the session is still what was read: a save that landed meanwhile keeps its
// mark and is tried again. Returns the number cleared.
constexpr const char* sync_reject_body = R"lua(
local n = 0
for i = 2, #ARGV, 3 do
  local f = redis.call('HMGET', ARGV[1] .. ARGV[i], 'v', 'la')
  if (f[1] or '') == ARGV[i + 1] and (f[2] or '') == ARGV[i + 2] then
    n = n + redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return n
)lua";

// KEYS: dirty. ARGV: session key prefix, now_ms, tombstone ttl ms, then (id, version read,
// PostgreSQL version, PostgreSQL status) quads for sessions whose PostgreSQL row is at a higher
// version than Redis (Redis lost the key and the id was written again from version 1). An id
// revoked in PostgreSQL becomes a tombstone again; any other moves past PostgreSQL's version and
// stays dirty, so the next sync writes it. Untouched when the session changed since the read.
constexpr const char* sync_repair_body = R"lua(
local n = 0
for i = 4, #ARGV, 4 do
  local key = ARGV[1] .. ARGV[i]
  local v = redis.call('HGET', key, 'v')
  if v and v == ARGV[i + 1] then
    if ARGV[i + 3] == 'REVOKED' then
      redis.call('HSET', key, 'v', ARGV[i + 2], 'st', 'R', 'rv', ARGV[2])
      redis.call('PEXPIRE', key, ARGV[3])
      redis.call('ZREM', KEYS[1], ARGV[i])
    else
      redis.call('HSET', key, 'v', string.format('%d', tonumber(ARGV[i + 2]) + 1))
      redis.call('ZADD', KEYS[1], 'NX', ARGV[2], ARGV[i])
    end
    n = n + 1
  end
end
return n
)lua";

// The row layout shared by restore, mirror and put_back. KEYS[1]: session. ARGV: id, v, u, st
// (A|R), ca, la, ex, ttl, d, rv, tombstone ttl ms. apply_row(nv) writes the row at version nv;
// the caller adds a live row to its user's index (another slot) afterwards.
constexpr const char* apply_row = R"lua(
local function int(x) return string.format('%d', x) end
local function apply_row(nv)
  redis.call('HSET', KEYS[1], 'v', nv, 'u', ARGV[3], 'st', ARGV[4], 'ca', ARGV[5],
             'la', ARGV[6], 'ex', ARGV[7], 'ttl', ARGV[8], 'd', ARGV[9], 't', ARGV[6])
  if ARGV[4] == 'R' then
    redis.call('HSET', KEYS[1], 'rv', ARGV[10])
    redis.call('PEXPIRE', KEYS[1], ARGV[11])
    return
  end
  redis.call('HDEL', KEYS[1], 'rv')
  redis.call('PEXPIREAT', KEYS[1], ARGV[7])
end
)lua";

// Read-through: puts a session loaded from PostgreSQL back into Redis, only if the key is
// still absent (a write that landed meanwhile wins). No dirty mark: PostgreSQL has it already.
// Returns 1 when restored, 0 when the key existed.
constexpr const char* restore_body = R"lua(
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
apply_row(ARGV[2])
return 1
)lua";

// The modes that write PostgreSQL first (shadow, redis-read) copy each row they wrote into
// Redis: only over a lower version, or the same version with later activity (a TTL slide), so
// copies that arrive out of order never move Redis back. No dirty mark: PostgreSQL has it.
// Returns 1 when written, 0 when Redis already had it.
constexpr const char* mirror_body = R"lua(
local cur = redis.call('HMGET', KEYS[1], 'v', 'la')
if cur[1] then
  local r, v = tonumber(cur[1]), tonumber(ARGV[2])
  if r > v or (r == v and tonumber(cur[2] or '0') >= tonumber(ARGV[6])) then return 0 end
end
apply_row(ARGV[2])
return 1
)lua";

// KEYS: session, dirty (one slot). ARGV: the row layout, then [12] now_ms. Puts back a session
// written in PostgreSQL while Redis was unreachable (noted in session_redis_repair). The later
// write wins, by activity time: Redis written after PostgreSQL keeps its data and moves past
// PostgreSQL's version (2); the same version and data takes the later times (3); otherwise the
// PostgreSQL row replaces Redis at max(Redis + 1, PostgreSQL's version) (1). A version past
// PostgreSQL's stays dirty so the sync writes it. Field pb remembers the note put back, so a
// second pass over the same note changes nothing (0).
constexpr const char* put_back_body = R"lua(
local cur = redis.call('HMGET', KEYS[1], 'v', 'u', 'la', 'd', 'st', 'pb')
local note = ARGV[2] .. '/' .. ARGV[6]
if cur[6] == note then return 0 end
local r, p = tonumber(cur[1] or '0'), tonumber(ARGV[2])
local function mark() redis.call('ZADD', KEYS[2], 'NX', ARGV[12], ARGV[1]) end
local code = 1
if cur[1] and tonumber(cur[3] or '0') > tonumber(ARGV[6]) then
  if r <= p then
    redis.call('HSET', KEYS[1], 'v', int(p + 1))
    mark()
  end
  code = 2
elseif r == p and cur[4] == ARGV[9] and cur[5] == ARGV[4] then
  apply_row(ARGV[2])
  code = 3
else
  local nv = math.max(r + 1, p)
  apply_row(int(nv))
  if nv > p then mark() end
end
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'pb', note) end
return code
)lua";

// Layout 1 -> 2, on the new key's slot. KEYS: session (layout 2), dirty. ARGV: id, now_ms,
// pttl of the old key (-1: none), then the old hash's field, value pairs. Copies the session
// unless layout 2 has it already (a write there is newer), marking it dirty: the sync writes it
// (PostgreSQL's version fence drops it if PostgreSQL has it). Returns 1 copied, 0 kept.
constexpr const char* upgrade_in_body = R"lua(
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
if tonumber(ARGV[3]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
redis.call('ZADD', KEYS[2], 'NX', ARGV[2], ARGV[1])
return 1
)lua";

// Layout 1 -> 2, on the old key's slot. KEYS: session (layout 1). ARGV: the version copied.
// Deletes the old key when it is still that version. Returns 1 deleted, 0 not.
constexpr const char* upgrade_out_body = R"lua(
if redis.call('HGET', KEYS[1], 'v') == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
)lua";

// The rotation pass. KEYS: session. ARGV: version read, the stored value read, the value sealed
// under the current key. Replaces the value only when the session is still at that version with
// that value (a write that landed meanwhile wins; no version change and no dirty mark: the data
// is the same, PostgreSQL holds it already). Returns 1 replaced, 0 not.
constexpr const char* reseal_body = R"lua(
local cur = redis.call('HMGET', KEYS[1], 'v', 'd')
if cur[1] ~= ARGV[1] or cur[2] ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'd', ARGV[3])
return 1
)lua";

} // namespace

redis_scripts::redis_scripts()
    : write(std::string(check_condition) + write_body),
      revoke(std::string(check_condition) + revoke_body),
      touch(touch_body),
      list_index(list_index_body),
      index_add(index_add_body),
      sync_read(sync_read_body),
      sync_ack(sync_ack_body),
      sync_repair(sync_repair_body),
      sync_reject(sync_reject_body),
      restore(std::string(apply_row) + restore_body),
      mirror(std::string(apply_row) + mirror_body),
      put_back(std::string(apply_row) + put_back_body),
      upgrade_in(upgrade_in_body),
      upgrade_out(upgrade_out_body),
      reseal(reseal_body) {}

} // namespace sessiond::actors
