-- lib/conversion.lua: how admitted buyers' attempts ended lately, booked or refused for stock,
-- as counts that halve every 30 s (in the stats hash: conv_booked, conv_refused, conv_ts).
-- confirm.lua notes a booking, admission_give_back.lua a refusal (each buyer once: its slot is
-- given back once); admit.lua slows admissions to the share that booked when buyers are being
-- refused (a tier they want is gone), so nobody is let in only to be told no.

local CONVERSION_HALF_LIFE_MS = 30000
-- Fewer outcomes than this tell nothing yet.
local CONVERSION_FEWEST = 4

local function recent_outcomes(stats, now)
  local v = redis.call('HMGET', stats, 'conv_booked', 'conv_refused', 'conv_ts')
  local factor = 1
  if v[3] then
    factor = 0.5 ^ (math.max(0, now - tonumber(v[3])) / CONVERSION_HALF_LIFE_MS)
  end
  return (tonumber(v[1]) or 0) * factor, (tonumber(v[2]) or 0) * factor
end

-- Notes one admitted buyer's attempt: booked (true) or refused for stock (false).
local function note_outcome(stats, now, booked)
  local b, r = recent_outcomes(stats, now)
  if booked then
    b = b + 1
  else
    r = r + 1
  end
  redis.call('HSET', stats, 'conv_booked', tostring(b), 'conv_refused', tostring(r),
    'conv_ts', now)
end

-- The share of recent attempts that booked, or nil while too few ended to tell.
local function recent_conversion(stats, now)
  local b, r = recent_outcomes(stats, now)
  if b + r < CONVERSION_FEWEST then
    return nil
  end
  return b / (b + r)
end

-- The slowest refusals slow admissions to: one every 5 s.
local PROBES_PER_MINUTE = 12

-- The admission rate (a minute) once refusals are counted: `rate` times the share of recent
-- attempts that booked, down to a probe every 5 s (never a stop); `rate` while nobody is
-- refused. The second result says whether refusals slowed it.
local function refusal_limited(rate, stats, now)
  local conversion = recent_conversion(stats, now)
  if rate <= 0 or not conversion or conversion >= 1 then
    return rate, false
  end
  return math.max(math.min(rate, PROBES_PER_MINUTE), rate * conversion), true
end
