-- lib/clock.lua: Redis's clock. Every script times by it, never by the caller's clock, so
-- services on machines whose clocks disagree still agree on deadlines.

-- Now, in milliseconds since the epoch.
local function clock_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Two counts kept in `hash` (fields `a`, `b`) that halve every `half_life_ms` since the time in
-- field `ts`: their values now. lib/conversion.lua's recent outcomes and lib/demand.lua's recent
-- stale admissions are such counts.
local function decayed_counts(hash, a, b, ts, now, half_life_ms)
  local v = redis.call('HMGET', hash, a, b, ts)
  local factor = 1
  if v[3] then
    factor = 0.5 ^ (math.max(0, now - tonumber(v[3])) / half_life_ms)
  end
  return (tonumber(v[1]) or 0) * factor, (tonumber(v[2]) or 0) * factor
end
