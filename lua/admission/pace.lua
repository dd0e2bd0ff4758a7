-- admission/pace.lua: how many admit.lua may admit now, by the rate (a token bucket) and
-- max_active. Spliced into admit.lua only; `k` holds admit.lua's keys by name.

-- Admissions a minute for this step: the set rate (the drain rate with the room off), under
-- adaptive admission's rate (adapt_rate.lua) and, while admitted buyers are refused for stock,
-- slowed to the share that can still book (recent attempts, and the sale's buyers who did
-- without the tiers now gone), down to a probe every 5 s, never a stop (lib/conversion.lua), so
-- the rest of the stock still sells and nobody is let in only to be told no. 0: no rate, as fast as the caller repeats the step (a room turned off).
local function admission_rate(k, room, now)
  local enabled = room.enabled == '1'
  local rate = tonumber(enabled and room.admission_per_minute or room.drain_per_minute) or 0
  if enabled and room.effective_per_minute then
    rate = math.min(rate, tonumber(room.effective_per_minute))
  end
  if enabled then
    rate = refusal_limited(rate, k.stats, k.inv, now)
  end
  return rate
end

-- Nothing accrues while closed or paused, so opening or resuming does not release a burst.
local function bucket_empty(k, now)
  redis.call('HSET', k.bucket, 'tokens', 0, 'ts', now)
end

-- The tokens in the bucket now (it refills at `rate` a minute and holds one second's worth, at
-- least one), and how many admissions the rate and max_active allow now.
local function admissions_allowed(k, room, rate, now)
  local allowed
  local tokens = 0
  if rate > 0 then
    local capacity = math.max(1, rate / 60)
    local bucket = redis.call('HMGET', k.bucket, 'tokens', 'ts')
    local last = tonumber(bucket[2]) or now
    tokens = math.min(capacity, (tonumber(bucket[1]) or 0) + math.max(0, now - last) * rate / 60000)
    allowed = math.floor(tokens)
  else
    allowed = math.huge
  end
  if room.enabled == '1' then
    -- Live tokens only: expired ones are cleared at most `bound` per step.
    local active = redis.call('ZCOUNT', k.adm, '(' .. now, '+inf')
    allowed = math.min(allowed, tonumber(room.max_active) - active)
  end
  return tokens, allowed
end

-- What is left in the bucket once `admitted` were let in.
local function bucket_spend(k, tokens, admitted, now)
  redis.call('HSET', k.bucket, 'tokens', tostring(math.max(0, tokens - admitted)), 'ts', now)
end
