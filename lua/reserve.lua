-- reserve.lua: reserve every requested tier of one booking, or nothing.
--
-- KEYS[1]  ev:{E}:inv     inventory hash (epoch, soldout, <tier>:cap/:next/:avail)
-- KEYS[2]  ev:{E}:used    set of token ids that already reserved
-- KEYS[3]  ev:{E}:holds   zset reservation id -> hold deadline (ms)
-- KEYS[4]  ev:{E}:holdv   hash reservation id -> "<fingerprint>|<attempt>|VIP=1,2;GA=7"
-- KEYS[4+i] ev:{E}:free:<tier i>  free numbers of the i-th requested tier
-- ARGV[1]  reservation id (the entry token's jti)
-- ARGV[2]  hold time to live, ms: the deadline is Redis's clock plus this, so every process
--          that compares deadlines (booking, sweeper) reads the same clock
-- ARGV[3]  the request's fingerprint (hex), kept with the hold
-- ARGV[4]  this attempt's id: the hold belongs to the latest attempt that made or continued
--          it, and only that attempt (or the sweeper) may release it
-- ARGV[5]  the buyer's queue id in the hold id's form, or '': an admission hold under that id
--          (hold on admission, see admit.lua) is claimed when it is for exactly these tiers and
--          quantities: it becomes this reservation's, its deadline re-armed on Redis's clock
-- ARGV[6..] pairs: tier code, quantity (quantity >= 1)
--
-- Returns one of
--   {"held", epoch, code1, {numbers...}, code2, {numbers...}, ...}
--   {"continued", epoch, code1, {numbers...}, ...}  this token holds these numbers already for
--                                   the same request (a retry after a lost answer): the hold's
--                                   deadline is re-armed and its numbers returned
--   {"claim_differs", epoch}        the buyer's admission hold is for other tiers or quantities
--                                   (the caller releases it, then reserves without a claim)
--   {"other_request"}               this token holds numbers for a different request
--   {"not_loaded"}                  the event's inventory is not in Redis (rebuild it first)
--   {"used"}                        this token already reserved and its hold is over
--   {"unknown_tier", code}
--   {"duplicate_tier", code}       a tier listed twice (its checks would not add up)
--   {"short", code, requested, available, ...}  every tier that fell short; nothing changed
--   {"sold_out", code, requested, available, ...}  the same, and no tier of the event has any left
--
-- Invariant per tier: avail = cap - next + |free|, and avail >= 0; held = the numbers of that
-- tier in open holds.

if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'not_loaded'}
end
local deadline = clock_ms() + tonumber(ARGV[2])
-- Makes `parts` (a hold's numbers, "VIP=1,2;GA=7") this reservation's hold, re-armed.
local function take_over(tag, parts)
  redis.call('ZADD', KEYS[3], deadline, ARGV[1])
  redis.call('HSET', KEYS[4], ARGV[1], hold_value(ARGV[3], ARGV[4], {parts}))
  local out = {tag, redis.call('HGET', KEYS[1], 'epoch')}
  for part in string.gmatch(parts, '[^;]+') do
    local code, list = string.match(part, '^(.-)=(.*)$')
    local numbers = {}
    for n in string.gmatch(list, '%d+') do
      numbers[#numbers + 1] = n
    end
    out[#out + 1] = code
    out[#out + 1] = numbers
  end
  return out
end

if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then
  local held = redis.call('HGET', KEYS[4], ARGV[1])
  if not held then
    return {'used'}
  end
  local fingerprint, _, parts = read_hold(held)
  if fingerprint ~= ARGV[3] then
    return {'other_request'}
  end
  return take_over('continued', parts)
end

local tiers = (#ARGV - 5) / 2

if ARGV[5] ~= '' then
  local claimed = redis.call('HGET', KEYS[4], ARGV[5])
  if claimed then
    local parts = select(3, read_hold(claimed))
    local counts, kinds = {}, 0
    for _, held in ipairs(hold_counts(parts)) do
      counts[held[1]] = held[2]
      kinds = kinds + 1
    end
    local same = kinds == tiers
    for i = 1, tiers do
      if counts[ARGV[4 + 2 * i]] ~= tonumber(ARGV[5 + 2 * i]) then
        same = false
      end
    end
    if not same then
      return {'claim_differs', redis.call('HGET', KEYS[1], 'epoch')}
    end
    redis.call('HDEL', KEYS[4], ARGV[5])
    redis.call('ZREM', KEYS[3], ARGV[5])
    redis.call('SADD', KEYS[2], ARGV[1])
    return take_over('held', parts)
  end
end

local short = {'short'}
local seen = {}
for i = 1, tiers do
  local code = ARGV[4 + 2 * i]
  local want = tonumber(ARGV[5 + 2 * i])
  if seen[code] then
    return {'duplicate_tier', code}
  end
  seen[code] = true
  local avail = tonumber(redis.call('HGET', KEYS[1], code .. ':avail'))
  if avail == nil then
    return {'unknown_tier', code}
  end
  if avail < want then
    short[#short + 1] = code
    short[#short + 1] = want
    short[#short + 1] = avail
  end
end
if #short > 1 then
  -- Tells the caller it may answer this event's next requests itself for a moment, sparing
  -- Redis a storm of bookings that cannot succeed (the flag means nothing is left, nor held).
  if redis.call('HGET', KEYS[1], 'soldout') == '1' then
    short[1] = 'sold_out'
  end
  return short
end

local out = {'held', redis.call('HGET', KEYS[1], 'epoch')}
local held = {}
for i = 1, tiers do
  local code = ARGV[4 + 2 * i]
  local want = tonumber(ARGV[5 + 2 * i])
  local numbers = take_numbers(KEYS[1], KEYS[4 + i], code, want)
  held[#held + 1] = code .. '=' .. table.concat(numbers, ',')
  out[#out + 1] = code
  out[#out + 1] = numbers
end

redis.call('SADD', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[3], deadline, ARGV[1])
redis.call('HSET', KEYS[4], ARGV[1], hold_value(ARGV[3], ARGV[4], held))

-- Nothing here can sell the event out: what it took is held until confirmed (confirm.lua).
return out
