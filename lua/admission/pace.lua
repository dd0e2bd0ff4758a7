-- admission/pace.lua: how many admit.lua may admit now, by the rate (a token bucket) and
-- max_active. Spliced into admit.lua only; `k` holds admit.lua's keys by name.

-- Admissions a minute for this step: the set rate (the drain rate with the room off), under
-- adaptive admission's rate (adapt_rate.lua) and, while admitted buyers are refused for stock,
-- slowed to the share of recent attempts that booked; and for buyers without a wish, also to the
-- share of the sale's buyers who did without the tiers now gone (lib/conversion.lua). Both go
-- down to a probe every 4.5 s, never a stop, so the rest of the stock still sells and nobody is
-- let in only to be told no. 0: no rate, as fast as the caller repeats the step (a room turned
-- off). Returns the rate and the rate for buyers without a wish.
local function admission_rate(k, room, now)
  local enabled = room.enabled == '1'
  local rate = tonumber(enabled and room.admission_per_minute or room.drain_per_minute) or 0
  if enabled and room.effective_per_minute then
    rate = math.min(rate, tonumber(room.effective_per_minute))
  end
  if not enabled then
    return rate, rate
  end
  local limited = refusal_limited(rate, k.stats, now)
  return limited, math.min(limited, (history_limited(rate, k.stats, k.inv, now)))
end

-- Nothing accrues while closed or paused, so opening or resuming does not release a burst.
local function bucket_empty(k, now)
  redis.call('HSET', k.bucket, 'tokens', 0, 'ts', now, 'nw_tokens', 0, 'nw_ts', now)
end

-- A bucket's tokens now: it refills at `rate` a minute and holds one second's worth, at least
-- one (fields `<prefix>tokens` and `<prefix>ts` of the bucket hash).
local function bucket_level(k, prefix, rate, now)
  local capacity = math.max(1, rate / 60)
  local bucket = redis.call('HMGET', k.bucket, prefix .. 'tokens', prefix .. 'ts')
  local last = tonumber(bucket[2]) or now
  return math.min(capacity, (tonumber(bucket[1]) or 0) + math.max(0, now - last) * rate / 60000)
end

-- The tokens in the bucket now (it refills at `rate` a minute and holds one second's worth, at
-- least one), and how many admissions the rate and max_active allow now.
local function admissions_allowed(k, room, rate, now)
  local allowed
  local tokens = 0
  if rate > 0 then
    tokens = bucket_level(k, '', rate, now)
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

-- Admissions of buyers without a wish the second bucket allows now, when their rate is below
-- the room's (`nowish_rate` < `rate`): its tokens, and how many (all, when it is not below).
local function nowish_allowed(k, rate, nowish_rate, now)
  if nowish_rate >= rate or nowish_rate <= 0 then
    return nil, math.huge
  end
  local tokens = bucket_level(k, 'nw_', nowish_rate, now)
  return tokens, math.floor(tokens)
end

-- What is left in the buckets once `admitted` were let in, `nowish` of them without a wish. The
-- second bucket keeps filling while it is not in use, up to its one second's worth.
local function bucket_spend(k, tokens, admitted, nw_tokens, nowish, now)
  redis.call('HSET', k.bucket, 'tokens', tostring(math.max(0, tokens - admitted)), 'ts', now)
  if nw_tokens then
    redis.call('HSET', k.bucket, 'nw_tokens', tostring(math.max(0, nw_tokens - nowish)),
      'nw_ts', now)
  else
    redis.call('HSET', k.bucket, 'nw_tokens', 1, 'nw_ts', now)
  end
end
