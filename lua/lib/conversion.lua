-- lib/conversion.lua: how many admitted buyers can still book, from two signals. How admitted
-- buyers' attempts ended lately, booked or refused for stock, as counts that halve every 30 s
-- (in the stats hash: conv_booked, conv_refused, conv_ts): confirm.lua notes a booking,
-- admission_give_back.lua a refusal (each buyer once: its slot is given back once). And the
-- sale's history: when a tier has nothing left on sale, at most the share of the sale's bookings
-- that did without it can still book (buyers:<code> of booked_total). admit.lua slows every
-- admission to the first share and admissions of buyers without a wish to the lower of the two,
-- so nobody is let in only to be told no.
--
-- The history answers at once where the recent outcomes lag: in a rehearsal where every buyer
-- took GA, GA sold out while the recent counts still held the bookings of the minute before, and
-- 1,100 admitted buyers were refused over the next four minutes before they faded.

local CONVERSION_HALF_LIFE_MS = 30000
-- Fewer outcomes than this tell nothing yet.
local CONVERSION_FEWEST = 4

local function recent_outcomes(stats, now)
  return decayed_counts(stats, 'conv_booked', 'conv_refused', 'conv_ts', now,
    CONVERSION_HALF_LIFE_MS)
end

-- Notes `count` admitted buyers' attempts (1 when nil) that ended alike: booked (true) or
-- refused for stock (false).
local function note_outcome(stats, now, booked, count)
  local b, r = recent_outcomes(stats, now)
  if booked then
    b = b + (count or 1)
  else
    r = r + (count or 1)
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

-- The share of the sale's buyers who did without every tier that has nothing left on sale now,
-- at most (buyers who took tier T: buyers:T of booked_total); 1 while a tier with none left was
-- never booked, or too few bookings were made to tell. `inv` is the inventory hash, whose
-- "<code>:cap" fields name the tiers.
local function bookable_share(stats, inv, now)
  local booked = tonumber(redis.call('HGET', stats, 'booked_total')) or 0
  if booked < CONVERSION_FEWEST then
    return 1
  end
  local share = 1
  local values = read_hash(inv)
  for field in pairs(values) do
    local code = string.match(field, '^(.+):cap$')
    if code and (tonumber(values[code .. ':avail']) or 0) <= 0 then
      local buyers = tonumber(redis.call('HGET', stats, 'buyers:' .. code)) or 0
      share = math.min(share, 1 - buyers / booked)
    end
  end
  return math.max(0, share)
end

-- The slowest refusals slow admissions to: one every 4.5 s, under the 5 s the operator is
-- promised with the worker's 0.1 s tick on top. Every probe while a tier every buyer wants is gone
-- is a refusal: a rehearsal's probes after GA sold out were 59-64 of its 65 refusals allowed at
-- one every 4 s, leaving the sale's last tickets no room (BENCHMARKS.md, session 22).
local PROBES_PER_MINUTE = 60000 / 4500

-- The admission rate (a minute) once refusals are counted: `rate` times the share of recent
-- attempts that booked, down to a probe every 4.5 s (never a stop); `rate` while nobody is
-- refused. The second result says whether refusals slowed it.
local function refusal_limited(rate, stats, now)
  local conversion = recent_conversion(stats, now)
  if rate <= 0 or not conversion or conversion >= 1 then
    return rate, false
  end
  return math.max(math.min(rate, PROBES_PER_MINUTE), rate * conversion), true
end

-- The admission rate for buyers without a wish once the sale's history is read: `rate` times
-- `bookable_share`, down to a probe every 4.5 s (never a stop). A buyer with a wish is judged by
-- it (parked when it cannot be met), so this applies to buyers without one only.
local function history_limited(rate, stats, inv, now)
  local share = bookable_share(stats, inv, now)
  if rate <= 0 or share >= 1 then
    return rate, false
  end
  return math.max(math.min(rate, PROBES_PER_MINUTE), rate * share), true
end

-- Fewer bookings than this, or fewer ended admissions, tell too little to foresee a sell-out.
local HORIZON_FEWEST = 20

-- How many more admissions the stock on sale can serve, foreseen from the sale so far, or -1
-- while it cannot be told: for each tier most of the sale's buyers took (buyers:T of
-- booked_total at least a half, so a buyer without a wish most likely wants it), what is left
-- of it over the tickets of it an ended admission took (sold:T over the admissions no longer
-- active: bookers, those refused, those who never booked all count, so no separate share of
-- no-shows is needed), less the admissions still active, who go first; the least of them.
-- A buyer without a wish further back than that is told no time (gateway's `wait.rs`): the
-- range it would get becomes a jump when the tier runs out.
-- `booked` is the sale's booked_total, which the caller has read already.
local function stock_horizon(stats, inv, admitted_total, booked, active)
  local ended = admitted_total - active
  if booked < HORIZON_FEWEST or ended < HORIZON_FEWEST then
    return -1
  end
  local values = read_hash(inv)
  local horizon = -1
  for field in pairs(values) do
    local code = string.match(field, '^(.+):cap$')
    if code then
      local taken = redis.call('HMGET', stats, 'buyers:' .. code, 'sold:' .. code)
      local buyers, sold = tonumber(taken[1]) or 0, tonumber(taken[2]) or 0
      if sold > 0 and buyers * 2 >= booked then
        local left = math.max(0, tonumber(values[code .. ':avail']) or 0)
        local serves = math.max(0, math.floor(left * ended / sold) - active)
        if horizon < 0 or serves < horizon then
          horizon = serves
        end
      end
    end
  end
  return horizon
end
