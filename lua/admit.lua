-- admit.lua: one admission tick for one event. Atomic, so any number of queue-workers may call it
-- at once without admitting anyone twice or beating the rate.
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
--
-- The bucket refills at admission_per_minute and holds at most one second of admissions, so
-- over any minute at most rate + rate/60 are admitted (within 2%). Admitted-but-unfinished
-- buyers never exceed max_active; tokens that expired unused free their slot here. Waiting
-- entries that stopped polling (not seen in this or the previous liveness window) are dropped
-- when they reach the head instead of wasting an admission.
--
-- Returns {admitted, dropped, expired}.

local now_t = redis.call('TIME')
local now_s = tonumber(now_t[1])
local now = now_s * 1000 + math.floor(tonumber(now_t[2]) / 1000)
local cfg = redis.call('HMGET', KEYS[1], 'enabled', 'admission_per_minute', 'max_active', 'paused',
  'token_ttl_s', 'opened', 'alive_window_s', 'aw0', 'aw1')
if not cfg[1] then
  return {0, 0, 0}
end

local expired = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, 500)
for _, qid in ipairs(expired) do
  redis.call('HSET', KEYS[7], qid, 'expired')
  redis.call('ZREM', KEYS[3], qid)
end

local soldout = redis.call('HGET', KEYS[10], 'soldout') == '1'
if cfg[1] ~= '1' or cfg[4] == '1' or cfg[6] ~= '1' or soldout then
  -- Nothing accrues while paused, so resuming does not release a burst.
  redis.call('HSET', KEYS[4], 'tokens', 0, 'ts', now)
  return {0, 0, #expired}
end

local rate = tonumber(cfg[2])
local capacity = math.max(1, rate / 60)
local bucket = redis.call('HMGET', KEYS[4], 'tokens', 'ts')
local tokens = tonumber(bucket[1]) or 0
local last = tonumber(bucket[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - last) * rate / 60000)

local room = tonumber(cfg[3]) - redis.call('ZCARD', KEYS[3])
local want = math.min(math.floor(tokens), room)

local window_s = tonumber(cfg[7]) or 60
local w = math.floor(now_s / window_s)
local function seen(place)
  for back = 0, 1 do
    local win = w - back
    local parity = win % 2
    if cfg[8 + parity] == tostring(win) and redis.call('GETBIT', KEYS[8 + parity], place) == 1 then
      return true
    end
  end
  return false
end

local admitted, dropped, examined = 0, 0, 0
local until_ms = now + tonumber(cfg[5]) * 1000
while admitted < want and examined < want * 4 + 100 do
  local head = redis.call('ZRANGE', KEYS[2], 0, want - admitted - 1, 'WITHSCORES')
  if #head == 0 then
    break
  end
  for i = 1, #head, 2 do
    local qid, place = head[i], tonumber(head[i + 1])
    examined = examined + 1
    redis.call('ZREM', KEYS[2], qid)
    if seen(place) then
      redis.call('ZADD', KEYS[3], until_ms, qid)
      admitted = admitted + 1
    else
      redis.call('HSET', KEYS[7], qid, 'abandoned')
      dropped = dropped + 1
    end
  end
end

redis.call('HSET', KEYS[4], 'tokens', tostring(tokens - admitted), 'ts', now)
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
return {admitted, dropped, #expired}
