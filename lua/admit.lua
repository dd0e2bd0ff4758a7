-- admit.lua: one bounded admission step for one event. Atomic, so any number of queue-workers
-- may call it at once without admitting anyone twice or beating the rate.
--
-- KEYS[1]  ev:{E}:cfg
-- KEYS[2]  ev:{E}:wait
-- KEYS[3]  ev:{E}:adm
-- KEYS[4]  ev:{E}:bucket   token bucket (tokens, ts)
-- KEYS[5]  ev:{E}:stats
-- KEYS[6]  ev:{E}:admsec
-- KEYS[7]  ev:{E}:gone
-- KEYS[8]  ev:{E}:alive:0
-- KEYS[9]  ev:{E}:alive:1
-- KEYS[10] ev:{E}:inv
-- KEYS[11] ev:{E}:seq
-- ARGV[1]  most entries this call may take off the head (admitted or dropped)
--
-- Nobody is admitted before on_sale_ms (Redis's clock), nor before admit_after_ms (set after a
-- Redis data loss, so entries coming back from their receipts are in line before anyone behind
-- them is admitted). With the room on, a token bucket refills at admission_per_minute and holds at
-- most one second of admissions (over any minute at most rate + rate/60, within 2%), and
-- admitted-but-unfinished buyers never exceed max_active. With the room off, whoever is still in
-- line (waiting or pre-queued) is drained in order, at drain_per_minute or, when that is 0, as
-- fast as the caller repeats this step; max_active does not apply. Waiting entries not seen in
-- this or the previous liveness window are dropped when they reach the head instead of wasting an
-- admission; admitted_through records the highest place taken off the head, so a receipt for a
-- place at or below it is never put back in line.
--
-- Returns {admitted, dropped, expired, more, arrivals, admitted_through}; `more` is 1 when this
-- step stopped at its bound with people it could admit now still in line.

local now_t = redis.call('TIME')
local now_s = tonumber(now_t[1])
local now = now_s * 1000 + math.floor(tonumber(now_t[2]) / 1000)
local cfg = redis.call('HMGET', KEYS[1], 'enabled', 'admission_per_minute', 'max_active', 'paused',
  'token_ttl_s', 'on_sale_ms', 'alive_window_s', 'aw0', 'aw1', 'drain_per_minute',
  'admit_after_ms', 'admitted_through')
if not cfg[1] then
  return {0, 0, 0, 0, 0, 0}
end
local bound = tonumber(ARGV[1])
local arrivals = tonumber(redis.call('GET', KEYS[11])) or 0
local through = tonumber(cfg[12]) or 0

local expired = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, bound)
for _, qid in ipairs(expired) do
  redis.call('HSET', KEYS[7], qid, 'expired')
  redis.call('ZREM', KEYS[3], qid)
end

local enabled = cfg[1] == '1'
local rate = tonumber(enabled and cfg[2] or cfg[10]) or 0
local soldout = redis.call('HGET', KEYS[10], 'soldout') == '1'
if cfg[4] == '1' or soldout or now < (tonumber(cfg[6]) or 0) or now < (tonumber(cfg[11]) or 0) then
  -- Nothing accrues while closed or paused, so opening or resuming does not release a burst.
  redis.call('HSET', KEYS[4], 'tokens', 0, 'ts', now)
  return {0, 0, #expired, 0, arrivals, through}
end

-- How many the rate and max_active allow now; this step takes at most `bound` of them.
local allowed
local tokens = 0
if rate > 0 then
  local capacity = math.max(1, rate / 60)
  local bucket = redis.call('HMGET', KEYS[4], 'tokens', 'ts')
  local last = tonumber(bucket[2]) or now
  tokens = math.min(capacity, (tonumber(bucket[1]) or 0) + math.max(0, now - last) * rate / 60000)
  allowed = math.floor(tokens)
else
  allowed = math.huge
end
if enabled then
  -- Live tokens only: expired ones are cleared at most `bound` per step.
  allowed = math.min(allowed, tonumber(cfg[3]) - redis.call('ZCOUNT', KEYS[3], '(' .. now, '+inf'))
end
local want = math.min(allowed, bound)

local window_s = tonumber(cfg[7]) or 60
local w = math.floor(now_s / window_s)
local function seen(place)
  local arrival = place % 268435456
  for back = 0, 1 do
    local win = w - back
    local parity = win % 2
    if cfg[8 + parity] == tostring(win) and redis.call('GETBIT', KEYS[8 + parity], arrival) == 1 then
      return true
    end
  end
  return false
end

local admitted, dropped = 0, 0
local until_ms = now + tonumber(cfg[5]) * 1000
while admitted < want and admitted + dropped < bound do
  local head = redis.call('ZRANGE', KEYS[2], 0, math.min(want - admitted, bound - admitted - dropped) - 1,
    'WITHSCORES')
  if #head == 0 then
    break
  end
  for i = 1, #head, 2 do
    local qid, place = head[i], tonumber(head[i + 1])
    redis.call('ZREM', KEYS[2], qid)
    if place > through then
      through = place
    end
    if seen(place) then
      redis.call('ZADD', KEYS[3], until_ms, qid)
      admitted = admitted + 1
    else
      redis.call('HSET', KEYS[7], qid, 'abandoned')
      dropped = dropped + 1
    end
  end
end
local more = 0
if admitted < allowed and admitted + dropped >= bound and redis.call('ZCARD', KEYS[2]) > 0 then
  more = 1
end

redis.call('HSET', KEYS[4], 'tokens', tostring(math.max(0, tokens - admitted)), 'ts', now)
if admitted + dropped > 0 then
  -- %.17g keeps every integer place below 2^53 exact (tostring would round it).
  redis.call('HSET', KEYS[1], 'admitted_through', string.format('%.17g', through))
end
if admitted > 0 then
  redis.call('HINCRBY', KEYS[5], 'admitted_total', admitted)
  redis.call('HINCRBY', KEYS[6], now_s, admitted)
end
if dropped > 0 then
  redis.call('HINCRBY', KEYS[5], 'dropped_total', dropped)
end
-- Keep two minutes of per-second admissions.
if now_s % 10 == 0 then
  for _, second in ipairs(redis.call('HKEYS', KEYS[6])) do
    if tonumber(second) < now_s - 120 then
      redis.call('HDEL', KEYS[6], second)
    end
  end
end
return {admitted, dropped, #expired, more, arrivals, through}
