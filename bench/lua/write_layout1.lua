-- Layout 1's session write script (before key layout 2), kept for bench/write-cost.sh's
-- old-against-new comparison only; sessiond no longer runs it.
local function cond_fails(cond, exists, v)
  if cond == '' then return false end
  if cond == 'n' then return exists end
  if cond == 'a' then return not exists end
  return (not exists) or v ~= string.sub(cond, 2)
end
-- Integers as text without going through '%.17g' (Redis formats Lua numbers given to
-- redis.call that way, which showed up as the top cost of the write path).
local function int(x) return string.format('%d', x) end
local cur = redis.call('HMGET', KEYS[1], 'v', 'st', 'ca', 'u')
local v = cur[1] or '0'
if cur[2] == 'R' then return {-410, v} end
local exists = cur[1] ~= false
if cond_fails(ARGV[7], exists, v) then return {-412, v} end
local ca = ARGV[4]
local ex = ARGV[9]
if exists then
  ca = cur[3]
  local cap = tonumber(ca) + tonumber(ARGV[6]) * 1000
  if cap < tonumber(ex) then
    if cap <= tonumber(ARGV[4]) then return {-404, v} end
    ex = int(cap)
  end
end
local nv = int(tonumber(v) + 1)
redis.call('HSET', KEYS[1], 'v', nv, 'u', ARGV[2], 'st', 'A', 'ca', ca, 'la', ARGV[4],
           'ex', ex, 'ttl', ARGV[5], 'd', ARGV[3], 't', ARGV[4])
redis.call('PEXPIREAT', KEYS[1], ex)
if exists and cur[4] and cur[4] ~= ARGV[2] then redis.call('ZREM', ARGV[8] .. cur[4], ARGV[1]) end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[4])
redis.call('ZADD', KEYS[2], ex, ARGV[1])
if redis.call('PEXPIREAT', KEYS[2], ex, 'GT') == 0 and redis.call('PTTL', KEYS[2]) == -1 then
  redis.call('PEXPIREAT', KEYS[2], ex)
end
redis.call('ZADD', KEYS[3], 'NX', ARGV[4], ARGV[1])
if exists then return {200, nv, ca, ex, ARGV[4]} end
return {201, nv, ca, ex, ARGV[4]}
