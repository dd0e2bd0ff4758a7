-- queue_stats.lua: the live numbers of one waiting room.
--
-- KEYS[1]  ev:{E}:wait
-- KEYS[2]  ev:{E}:adm
-- KEYS[3]  ev:{E}:stats
-- KEYS[4]  ev:{E}:admsec
-- KEYS[5]  ev:{E}:cfg      admission_per_minute, enabled, effective_per_minute (adaptive
--                          admission, adapt_rate.lua)
-- KEYS[6]  ev:{E}:inv      which tiers have none left (lib/conversion.lua)
--
-- Returns {waiting, admitted_total, active, booked_total, admitted_last_minute, dropped_total,
-- effective_per_minute (0 when adaptive admission is off), refusal_per_minute (the rate once
-- refusals of admitted buyers slow it, admit.lua; 0 while they do not), probes_only (1 when
-- that rate is the probes' floor: a buyer without a wish goes in only as a probe),
-- stock_horizon (how many more admissions the stock on sale can serve, as the sale so far
-- foresees it; -1 while it cannot tell, or with the room off: lib/conversion.lua)};
-- `waiting` counts the pre-queue too (it stands in the same sorted set).

local now = clock_ms()
local now_s = math.floor(now / 1000)
local stats = redis.call('HMGET', KEYS[3], 'admitted_total', 'booked_total', 'dropped_total')
local last_minute = 0
local per_second = redis.call('HGETALL', KEYS[4])
for i = 1, #per_second, 2 do
  if tonumber(per_second[i]) > now_s - 60 then
    last_minute = last_minute + tonumber(per_second[i + 1])
  end
end
local room = read_fields(KEYS[5], {'admission_per_minute', 'enabled', 'effective_per_minute'})
local effective = tonumber(room.effective_per_minute) or 0
local admitted_total = tonumber(stats[1]) or 0
local active = redis.call('ZCOUNT', KEYS[2], '(' .. now, '+inf')
local refusal_rate, probes_only, horizon = 0, 0, -1
if room.enabled == '1' then
  horizon = stock_horizon(KEYS[3], KEYS[6], admitted_total, tonumber(stats[2]) or 0, active)
  local rate = tonumber(room.admission_per_minute) or 0
  if effective > 0 then
    rate = math.min(rate, effective)
  end
  -- What a buyer without a wish faces: the lower of the two (lib/conversion.lua).
  local limited, slowed = refusal_limited(rate, KEYS[3], now)
  local by_history, slowed_by_history = history_limited(rate, KEYS[3], KEYS[6], now)
  limited, slowed = math.min(limited, by_history), slowed or slowed_by_history
  if slowed then
    refusal_rate = math.max(1, math.floor(limited))
    if limited <= math.min(rate, PROBES_PER_MINUTE) then
      probes_only = 1
    end
  end
end
return {
  redis.call('ZCARD', KEYS[1]),
  admitted_total,
  active,
  tonumber(stats[2]) or 0,
  last_minute,
  tonumber(stats[3]) or 0,
  effective,
  refusal_rate,
  probes_only,
  horizon,
}
