-- lib/clock.lua: Redis's clock. Every script times by it, never by the caller's clock, so
-- services on machines whose clocks disagree still agree on deadlines.

-- Now, in milliseconds since the epoch.
local function clock_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
