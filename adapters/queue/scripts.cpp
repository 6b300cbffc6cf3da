// Lua sources of the job queue (see scripts.hpp for the key layout). Every script gets the
// queue's meta key as KEYS[1] and derives the queue's other keys from it, so all of them carry
// the queue's hash tag and live in one Redis Cluster slot.
#include "adapters/queue/scripts.hpp"

#include <string>

namespace sessiond::queue {

namespace {

// Shared by every queue script. B is the queue's key base "P{q:<name>}:".
constexpr const char* prelude = R"lua(
local B = string.sub(KEYS[1], 1, -5)
local PRI = 4398046511104
local MAXTYPES = 100
-- Integers as text without '%.17g' (how Redis formats Lua numbers it is given).
local function int(x) return string.format('%d', x) end
local function jkey(id) return B .. 'j:' .. id end
local function wkey(t) return B .. 'w:' .. t end
-- Waiting order: higher priority first, then by sequence (FIFO).
local function wscore(pr, seq) return int(-(tonumber(pr) or 0) * PRI + seq) end
local function release_dedup(dk, id)
  if dk and redis.call('HGET', B .. 'dd', dk) == id then redis.call('HDEL', B .. 'dd', dk) end
end
local function add_history(k, old, entry)
  if old then entry = old .. ',' .. entry end
  redis.call('HSET', k, 'h', entry)
end
-- Puts a job into its type's waiting set: at its own place (its id is its first sequence
-- number) or, `fresh`, behind every job waiting now. The sequence counter moves either way:
-- nodes with parked lease requests watch it.
local function make_waiting(id, t, pr, fresh)
  local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
  if not fresh then seq = tonumber(id) end
  redis.call('ZADD', wkey(t), wscore(pr, seq), id)
  redis.call('SADD', B .. 'types', t)
end
-- Delayed jobs whose due time has come become waiting, in due order.
local function promote(now, limit)
  local due = redis.call('ZRANGEBYSCORE', B .. 'd', '-inf', now, 'LIMIT', 0, limit)
  for _, id in ipairs(due) do
    local k = jkey(id)
    local j = redis.call('HMGET', k, 't', 'pr')
    if j[1] then
      make_waiting(id, j[1], j[2], true)
      redis.call('HSET', k, 'st', 'w', 'ra', int(now))
      redis.call('HDEL', k, 'du')
    else
      redis.call('HINCRBY', KEYS[1], 'n', -1) -- its hash was deleted behind our back
    end
  end
  if #due > 0 then redis.call('ZREM', B .. 'd', unpack(due)) end
  return #due
end
-- Keeps at most `keep` members of a finished set, deleting the oldest jobs (1000 per call).
local function trim(z, keep)
  local excess = redis.call('ZCARD', z) - keep
  if excess <= 0 then return end
  if excess > 1000 then excess = 1000 end
  local old = redis.call('ZRANGE', z, 0, excess - 1)
  local keys = {}
  for i, id in ipairs(old) do keys[i] = jkey(id) end
  redis.call('DEL', unpack(keys))
  redis.call('ZREMRANGEBYRANK', z, 0, excess - 1)
end
)lua";

// ARGV: now, max_length, fence field ('' none), fence period, n, then 7 per job: type, payload,
// delay_ms, priority, max_attempts, dedup_key, lease_ms ('' when not given).
// Returns {-429, unfinished} | {-422, waiting types} | {-409, last period} |
// {1, id, state, created (1|0), ...}: state 'w' or 'd', or the state of the unfinished job a
// dedup key matched (created 0).
constexpr const char* enqueue_body = R"lua(
local now = tonumber(ARGV[1])
if ARGV[3] ~= '' then
  local last = redis.call('HGET', KEYS[1], ARGV[3])
  if last and tonumber(last) >= tonumber(ARGV[4]) then return {-409, last} end
end
local n = tonumber(ARGV[5])
local ids, states, made, alias, seen, newtypes = {}, {}, {}, {}, {}, {}
local want, nnew = 0, 0
for i = 1, n do
  local o = 5 + (i - 1) * 7
  local dk = ARGV[o + 6]
  if dk ~= '' then
    if seen[dk] then
      alias[i] = seen[dk]
    else
      local id = redis.call('HGET', B .. 'dd', dk)
      local st = id and redis.call('HGET', jkey(id), 'st')
      if st == 'w' or st == 'd' or st == 'a' then
        ids[i], states[i], made[i] = id, st, 0
      else
        seen[dk] = i
      end
    end
  end
  if not ids[i] and not alias[i] then
    want = want + 1
    local t = ARGV[o + 1]
    if tonumber(ARGV[o + 3]) <= 0 and not newtypes[t] then
      newtypes[t] = true
      if redis.call('SISMEMBER', B .. 'types', t) == 0 then nnew = nnew + 1 end
    end
  end
end
local unfinished = tonumber(redis.call('HGET', KEYS[1], 'n') or '0')
if unfinished + want > tonumber(ARGV[2]) then return {-429, unfinished} end
if nnew > 0 then
  local have = redis.call('SCARD', B .. 'types')
  if have + nnew > MAXTYPES then return {-422, have} end
end
-- One counter step for the whole batch; each type's waiting jobs go in with one ZADD.
local seq = want > 0 and redis.call('HINCRBY', KEYS[1], 'seq', want) - want or 0
local adds = {}
for i = 1, n do
  if not ids[i] and not alias[i] then
    local o = 5 + (i - 1) * 7
    local t, delay, pr = ARGV[o + 1], tonumber(ARGV[o + 3]), ARGV[o + 4]
    seq = seq + 1
    local id = int(seq)
    local f = {'t', t, 'p', ARGV[o + 2], 'ca', ARGV[1]} -- ready since: ra once it waited again
    if pr ~= '0' then f[#f + 1] = 'pr'; f[#f + 1] = pr end
    if ARGV[o + 5] ~= '' then f[#f + 1] = 'ma'; f[#f + 1] = ARGV[o + 5] end
    if ARGV[o + 6] ~= '' then
      f[#f + 1] = 'dk'; f[#f + 1] = ARGV[o + 6]
      redis.call('HSET', B .. 'dd', ARGV[o + 6], id)
    end
    if ARGV[o + 7] ~= '' then f[#f + 1] = 'lm'; f[#f + 1] = ARGV[o + 7] end
    if delay > 0 then
      local du = int(now + delay)
      f[#f + 1] = 'st'; f[#f + 1] = 'd'; f[#f + 1] = 'du'; f[#f + 1] = du
      redis.call('ZADD', B .. 'd', du, id)
      states[i] = 'd'
    else
      f[#f + 1] = 'st'; f[#f + 1] = 'w'
      local list = adds[t]
      if not list then list = {}; adds[t] = list end
      list[#list + 1] = wscore(pr, seq); list[#list + 1] = id
      states[i] = 'w'
    end
    redis.call('HSET', jkey(id), unpack(f))
    ids[i], made[i] = id, 1
  end
end
for t, list in pairs(adds) do redis.call('ZADD', wkey(t), unpack(list)) end
for t in pairs(newtypes) do redis.call('SADD', B .. 'types', t) end
if want > 0 then redis.call('HINCRBY', KEYS[1], 'n', want) end
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], ARGV[3], ARGV[4]) end
local out = {1}
for i = 1, n do
  if alias[i] then ids[i], states[i], made[i] = ids[alias[i]], states[alias[i]], 0 end
  out[#out + 1] = ids[i]; out[#out + 1] = states[i]; out[#out + 1] = made[i]
end
return out
)lua";

// ARGV: now, max, lease_ms, token prefix, ntypes, types... (none: every type).
// Returns {1} while the queue is paused, else {0, id, type, payload, attempt, token, expires_ms,
// ready_ms, ...}: the jobs in lease order (highest priority first, then FIFO).
constexpr const char* lease_body = R"lua(
local now = tonumber(ARGV[1])
if redis.call('HGET', KEYS[1], 'paused') then return {1} end
promote(now, 1000)
local max = tonumber(ARGV[2])
local list = {}
if tonumber(ARGV[5]) == 0 then
  list = redis.call('SMEMBERS', B .. 'types')
else
  for i = 6, 5 + tonumber(ARGV[5]) do list[#list + 1] = ARGV[i] end
end
local picks = {}
if #list == 1 then
  local t = list[1]
  local r = redis.call('ZPOPMIN', wkey(t), max)
  for i = 1, #r, 2 do picks[#picks + 1] = {r[i], t} end
  if #picks < max then redis.call('SREM', B .. 'types', t) end
elseif #list > 1 then
  local heads = {}
  for _, t in ipairs(list) do
    local h = redis.call('ZRANGE', wkey(t), 0, 0, 'WITHSCORES')
    if h[1] then heads[t] = {h[1], tonumber(h[2])} else redis.call('SREM', B .. 'types', t) end
  end
  while #picks < max do
    local best, bs = nil, nil
    for t, h in pairs(heads) do
      if not bs or h[2] < bs then best, bs = t, h[2] end
    end
    if not best then break end
    redis.call('ZPOPMIN', wkey(best))
    picks[#picks + 1] = {heads[best][1], best}
    local h = redis.call('ZRANGE', wkey(best), 0, 0, 'WITHSCORES')
    if h[1] then
      heads[best] = {h[1], tonumber(h[2])}
    else
      heads[best] = nil
      redis.call('SREM', B .. 'types', best)
    end
  end
end
local out, ids = {0}, {}
local lease = tonumber(ARGV[3])
local first = nil
for i, pk in ipairs(picks) do
  local id, t = pk[1], pk[2]
  local k = jkey(id)
  local j = redis.call('HMGET', k, 'p', 'a', 'lm', 'ra', 'ca')
  if j[1] then
    local a = (tonumber(j[2]) or 0) + 1
    local e = now + (tonumber(j[3]) or lease)
    if not first or e < first then first = e end
    local exp = int(e)
    local tok = ARGV[4] .. i
    redis.call('HSET', k, 'st', 'a', 'a', a, 'tok', tok, 'le', exp, 'ls', ARGV[1])
    ids[#ids + 1] = id
    out[#out + 1] = id; out[#out + 1] = t; out[#out + 1] = j[1]; out[#out + 1] = a
    out[#out + 1] = tok; out[#out + 1] = exp; out[#out + 1] = j[4] or j[5]
  else
    redis.call('HINCRBY', KEYS[1], 'n', -1) -- its hash was deleted behind our back
  end
end
if #ids > 0 then
  redis.call('ZADD', B .. 'a', int(first), ARGV[4])
  redis.call('HSET', B .. 'al', ARGV[4], table.concat(ids, ' '))
  redis.call('HINCRBY', KEYS[1], 'act', #ids)
end
return out
)lua";

// ARGV: now, keep_completed, keep_failed, backoff_ms, max_backoff_ms, default max_attempts, n,
// then 5 per entry: id, token, kind (c complete, f fail, F fail for good), value (the result
// JSON; for a failure the error as a JSON string), a random number in [0, 1) for the jitter.
// Returns 2 per entry: outcome (c completed, w retried now, d retried later, f failed for good,
// l lease lost, n no such job), lease start ms.
constexpr const char* finish_body = R"lua(
local now = tonumber(ARGV[1])
local keepc, keepf = tonumber(ARGV[2]), tonumber(ARGV[3])
local base, cap, defma = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local out, cdone, fdone = {}, {}, {}
local gone = 0
local finished = 0
for i = 1, tonumber(ARGV[7]) do
  local o = 7 + (i - 1) * 5
  local id, kind, value = ARGV[o + 1], ARGV[o + 3], ARGV[o + 4]
  local k = jkey(id)
  local j = redis.call('HMGET', k, 'st', 'tok', 'dk', 'ls')
  local outcome = 'l'
  if not j[1] then outcome = 'n' end
  if j[1] == 'a' and j[2] == ARGV[o + 2] then
    gone = gone + 1
    if kind == 'c' then
      outcome = 'c'
      if keepc > 0 then
        if value ~= '' then
          redis.call('HSET', k, 'st', 'c', 'fa', ARGV[1], 'r', value)
        else
          redis.call('HSET', k, 'st', 'c', 'fa', ARGV[1])
        end
        cdone[#cdone + 1] = ARGV[1]; cdone[#cdone + 1] = id
      else
        redis.call('DEL', k)
      end
    else
      local more = redis.call('HMGET', k, 'ma', 'pr', 'h', 't', 'a')
      local a = tonumber(more[5]) or 1
      add_history(k, more[3], '{"attempt":' .. a .. ',"started_at":' .. (j[4] or 'null') ..
                  ',"ended_at":' .. ARGV[1] .. ',"outcome":"failed","error":' .. value .. '}')
      if kind == 'f' and a < (tonumber(more[1]) or defma) then
        local c = base
        for _ = 2, a do
          if c >= cap then break end
          c = c * 2
        end
        if c > cap then c = cap end
        local delay = math.floor(c * tonumber(ARGV[o + 5]))
        if delay > 0 then
          local du = int(now + delay)
          redis.call('HSET', k, 'st', 'd', 'e', value, 'du', du)
          redis.call('ZADD', B .. 'd', du, id)
          outcome = 'd'
        else
          make_waiting(id, more[4], more[2], true)
          redis.call('HSET', k, 'st', 'w', 'e', value, 'ra', ARGV[1])
          outcome = 'w'
        end
      else
        outcome = 'f'
        if keepf > 0 then
          redis.call('HSET', k, 'st', 'f', 'e', value, 'fa', ARGV[1])
          fdone[#fdone + 1] = ARGV[1]; fdone[#fdone + 1] = id
        else
          redis.call('DEL', k)
        end
      end
    end
    if outcome == 'c' or outcome == 'f' then
      finished = finished + 1
      release_dedup(j[3], id)
    end
  end
  out[#out + 1] = outcome; out[#out + 1] = j[4] or '0'
end
if gone > 0 then redis.call('HINCRBY', KEYS[1], 'act', -gone) end
if finished > 0 then redis.call('HINCRBY', KEYS[1], 'n', -finished) end
if #cdone > 0 then redis.call('ZADD', B .. 'c', unpack(cdone)); trim(B .. 'c', keepc) end
if #fdone > 0 then redis.call('ZADD', B .. 'f', unpack(fdone)); trim(B .. 'f', keepf) end
return out
)lua";

// ARGV: now, n, then id, token, lease_ms per entry. Returns per entry the new expiry ms, or -1
// when the lease is no longer held.
constexpr const char* extend_body = R"lua(
local now = tonumber(ARGV[1])
local out = {}
for i = 1, tonumber(ARGV[2]) do
  local o = 2 + (i - 1) * 3
  local id = ARGV[o + 1]
  local j = redis.call('HMGET', jkey(id), 'st', 'tok')
  if j[1] == 'a' and j[2] == ARGV[o + 2] then
    local exp = int(now + tonumber(ARGV[o + 3]))
    redis.call('HSET', jkey(id), 'le', exp)
    redis.call('ZADD', B .. 'a', exp, ARGV[o + 2])
    redis.call('HSET', B .. 'al', ARGV[o + 2], id)
    out[#out + 1] = exp
  else
    out[#out + 1] = -1
  end
end
return out
)lua";

// ARGV: now, n, then id, token per entry. Leased jobs go back to waiting at their own place
// with the attempt not counted. Returns how many were given back.
constexpr const char* release_body = R"lua(
local released = 0
for i = 1, tonumber(ARGV[2]) do
  local o = 2 + (i - 1) * 2
  local id = ARGV[o + 1]
  local k = jkey(id)
  local j = redis.call('HMGET', k, 'st', 'tok', 't', 'pr', 'a')
  if j[1] == 'a' and j[2] == ARGV[o + 2] then
    redis.call('HINCRBY', KEYS[1], 'act', -1)
    redis.call('HSET', k, 'st', 'w', 'a', math.max(0, (tonumber(j[5]) or 1) - 1), 'ra', ARGV[1])
    redis.call('HDEL', k, 'tok', 'le', 'ls')
    make_waiting(id, j[3], j[4], false)
    released = released + 1
  end
end
return released
)lua";

// ARGV: now, max_stalled, default max_attempts, keep_age_ms, limit.
// Promotes due delayed jobs; leases that expired count a stall (and used their attempt): the job
// waits again at its own place, or fails for good after max_stalled stalls or its last attempt;
// finished jobs older than keep_age go. Returns {promoted, requeued, stalled_failed, next due
// ms (-1 none), next lease expiry ms (-1 none), trimmed}.
constexpr const char* tick_body = R"lua(
local now = tonumber(ARGV[1])
local maxst, defma, limit = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[5])
local promoted = promote(now, limit)
-- Lease entries due now: a lease call's ("<prefix>", its jobs) or an extension's ("<token>", one
-- job). A job of an entry is reaped if it still holds that lease and its own expiry passed; one
-- whose lease runs longer (its own lease_ms, an extension) gets an entry of its own.
local entries = redis.call('ZRANGEBYSCORE', B .. 'a', '-inf', now, 'LIMIT', 0, limit)
local expired = {}
for _, entry in ipairs(entries) do
  local list = redis.call('HGET', B .. 'al', entry) or ''
  local batch = string.sub(entry, -1) == '.'
  for id in string.gmatch(list, '%S+') do
    local j = redis.call('HMGET', jkey(id), 'st', 'tok', 'le')
    local held = j[1] == 'a' and j[2] and
                 ((batch and string.sub(j[2], 1, #entry) == entry) or j[2] == entry)
    if held then
      if (tonumber(j[3]) or 0) <= now then
        expired[#expired + 1] = id
      else
        redis.call('ZADD', B .. 'a', j[3], j[2])
        redis.call('HSET', B .. 'al', j[2], id)
      end
    end
  end
end
if #entries > 0 then
  redis.call('ZREM', B .. 'a', unpack(entries))
  redis.call('HDEL', B .. 'al', unpack(entries))
end
local requeued, failed = 0, 0
for _, id in ipairs(expired) do
  local k = jkey(id)
  local j = redis.call('HMGET', k, 'st', 't', 'pr', 'a', 'ma', 'sc', 'ls', 'dk', 'h')
  if j[1] == 'a' then
    redis.call('HINCRBY', KEYS[1], 'act', -1)
    local sc = (tonumber(j[6]) or 0) + 1
    local a = tonumber(j[4]) or 1
    add_history(k, j[9], '{"attempt":' .. a .. ',"started_at":' .. (j[7] or 'null') ..
                ',"ended_at":' .. ARGV[1] .. ',"outcome":"stalled","error":"lease expired"}')
    if sc >= maxst or a >= (tonumber(j[5]) or defma) then
      local why = sc >= maxst and ('stalled ' .. sc .. ' times (max_stalled)')
                  or 'stalled on its last attempt'
      redis.call('HSET', k, 'st', 'f', 'sc', sc, 'e', '"' .. why .. '"', 'fa', ARGV[1])
      redis.call('HDEL', k, 'tok', 'le')
      redis.call('ZADD', B .. 'f', ARGV[1], id)
      release_dedup(j[8], id)
      redis.call('HINCRBY', KEYS[1], 'n', -1)
      failed = failed + 1
    else
      redis.call('HSET', k, 'st', 'w', 'sc', sc, 'ra', ARGV[1])
      redis.call('HDEL', k, 'tok', 'le', 'ls')
      make_waiting(id, j[2], j[3], false)
      requeued = requeued + 1
    end
  end
end
local trimmed = 0
for _, z in ipairs({B .. 'c', B .. 'f'}) do
  local old = redis.call('ZRANGEBYSCORE', z, '-inf', now - tonumber(ARGV[4]), 'LIMIT', 0, limit)
  if #old > 0 then
    local keys = {}
    for i, id in ipairs(old) do keys[i] = jkey(id) end
    redis.call('DEL', unpack(keys))
    redis.call('ZREM', z, unpack(old))
    trimmed = trimmed + #old
  end
end
local d = redis.call('ZRANGE', B .. 'd', 0, 0, 'WITHSCORES')
local x = redis.call('ZRANGE', B .. 'a', 0, 0, 'WITHSCORES')
return {promoted, requeued, failed, d[2] or -1, x[2] or -1, trimmed}
)lua";

// Read only. Returns {waiting, delayed, active, completed, failed, paused (0|1), oldest ready ms
// of the jobs next in line per type (-1 none), ntypes, type, waiting, type, waiting, ...}.
constexpr const char* stats_body = R"lua(
local types = redis.call('SMEMBERS', B .. 'types')
local waiting, oldest, per = 0, -1, {}
for _, t in ipairs(types) do
  local c = redis.call('ZCARD', wkey(t))
  if c > 0 then
    waiting = waiting + c
    per[#per + 1] = t; per[#per + 1] = c
    local head = redis.call('ZRANGE', wkey(t), 0, 0)
    local j = redis.call('HMGET', jkey(head[1]), 'ra', 'ca')
    local ready = tonumber(j[1] or j[2])
    if ready and (oldest < 0 or ready < oldest) then oldest = ready end
  end
end
local paused = 0
if redis.call('HGET', KEYS[1], 'paused') then paused = 1 end
local out = {waiting, redis.call('ZCARD', B .. 'd'),
             math.max(0, tonumber(redis.call('HGET', KEYS[1], 'act') or '0')),
             redis.call('ZCARD', B .. 'c'), redis.call('ZCARD', B .. 'f'), paused, oldest,
             #per / 2}
for _, v in ipairs(per) do out[#out + 1] = v end
return out
)lua";

// ARGV: now, id. A failed job waits again behind the others, with its attempts and stalls
// reset and its history kept. Returns {1} | {-404} | {-4090, state}.
constexpr const char* retry_body = R"lua(
local k = jkey(ARGV[2])
local j = redis.call('HMGET', k, 'st', 't', 'pr', 'dk')
if not j[1] then return {-404} end
if j[1] ~= 'f' then return {-4090, j[1]} end
redis.call('ZREM', B .. 'f', ARGV[2])
redis.call('HSET', k, 'st', 'w', 'a', 0, 'sc', 0, 'ra', ARGV[1])
redis.call('HDEL', k, 'fa')
make_waiting(ARGV[2], j[2], j[3], true)
redis.call('HINCRBY', KEYS[1], 'n', 1)
if j[4] then
  local holder = redis.call('HGET', B .. 'dd', j[4])
  local st = holder and redis.call('HGET', jkey(holder), 'st')
  if not (st == 'w' or st == 'd' or st == 'a') then redis.call('HSET', B .. 'dd', j[4], ARGV[2]) end
end
return {1}
)lua";

// ARGV: id. Deletes a job that is not active. Returns {1, state} | {-404} | {-4090, 'a'}.
constexpr const char* remove_body = R"lua(
local id = ARGV[1]
local k = jkey(id)
local j = redis.call('HMGET', k, 'st', 't', 'dk')
if not j[1] then return {-404} end
if j[1] == 'a' then return {-4090, 'a'} end
if j[1] == 'w' then
  redis.call('ZREM', wkey(j[2]), id)
  if redis.call('EXISTS', wkey(j[2])) == 0 then redis.call('SREM', B .. 'types', j[2]) end
elseif j[1] == 'd' then
  redis.call('ZREM', B .. 'd', id)
elseif j[1] == 'c' then
  redis.call('ZREM', B .. 'c', id)
elseif j[1] == 'f' then
  redis.call('ZREM', B .. 'f', id)
end
if j[1] == 'w' or j[1] == 'd' then redis.call('HINCRBY', KEYS[1], 'n', -1) end
release_dedup(j[3], id)
redis.call('DEL', k)
return {1, j[1]}
)lua";

// KEYS[1] P{queues}. ARGV: name, max_queues. Returns 1 when the name is (now) registered, 0
// when the limit refuses a new one.
constexpr const char* register_body = R"lua(
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return 1 end
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('SADD', KEYS[1], ARGV[1])
return 1
)lua";

std::string with_prelude(const char* body) {
  return std::string(prelude) + body;
}

} // namespace

scripts::scripts()
    : enqueue(with_prelude(enqueue_body)),
      lease(with_prelude(lease_body)),
      finish(with_prelude(finish_body)),
      extend(with_prelude(extend_body)),
      release(with_prelude(release_body)),
      tick(with_prelude(tick_body)),
      stats(with_prelude(stats_body)),
      retry(with_prelude(retry_body)),
      remove(with_prelude(remove_body)),
      register_queue(register_body) {}

} // namespace sessiond::queue
