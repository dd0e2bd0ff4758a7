-- lib/demand.lua: what an admitted buyer counts against the stock (admit.lua's stock gate), and
-- how it stops counting. Spliced before every script when it is loaded (`lua_script!`): it
-- defines functions only, and reads no KEYS or ARGV of its own.
--
-- `admw` holds each admitted buyer's record: "w|GA=200;VIP=100" (a wish) or "a|GA=20;..." (no
-- wish: the sale's average), in hundredths of tickets, which `admd` sums per tier. A buyer
-- admitted with its wish held ("h|GA:2") counts nothing: its tickets are out of the stock
-- already, held under its queue id.
--
-- A record is fresh ("w|", "a|") while its buyer may well still book: undelivered, until its
-- page's longest poll interval has passed (admfresh: queue id -> until when); delivered, for the
-- time 95 % of this sale's buyers took from delivery to booking (admdlv: queue id -> delivered
-- when; `fresh_after_delivery`). Then it goes stale ("w~|", "a~|"), summed in admd under
-- "<code>~", and the gate counts stale demand only at the share of stale admissions that came
-- back (delivered late, booked, or refused for stock): `stale_weight`. A stale buyer who comes
-- back counts in full again. An
-- admission whose page is gone holds its slot until it is reclaimed (the delivery window, or
-- the page silent for page_gone_ms), but not the stock: at the end of a tier, a rehearsal's
-- absent buyers (5 % of admissions, each holding 2.5 GA for 30-49 s) counted more than was left
-- and held the last 150 GA for 70 s.

-- Stops counting `qid`'s demand: 'fresh' or 'stale' (what it was), false when it had no record.
local function forget_demand(admw, admd, qid)
  local demand = redis.call('HGET', admw, qid)
  if not demand then
    return false
  end
  local stale = string.sub(demand, 2, 2) == '~'
  if string.sub(demand, 1, 2) ~= 'h|' then
    local field = stale and '~' or ''
    for code, hundredths in string.gmatch(demand, '([^|=;~]+)=(%d+)') do
      redis.call('HINCRBY', admd, code .. field, 0 - tonumber(hundredths))
    end
  end
  redis.call('HDEL', admw, qid)
  return stale and 'stale' or 'fresh'
end

-- Moves `qid`'s counted demand to stale (`to_stale`) or back to fresh; true when it moved (a
-- record of the other kind was there).
local function restate_demand(admw, admd, qid, to_stale)
  local demand = redis.call('HGET', admw, qid)
  if not demand or string.sub(demand, 1, 2) == 'h|' then
    return false
  end
  local stale = string.sub(demand, 2, 2) == '~'
  if stale == to_stale then
    return false
  end
  local from, to = '', '~'
  if stale then
    from, to = '~', ''
  end
  local counts = string.match(demand, '|(.*)$')
  for code, hundredths in string.gmatch(counts, '([^=;]+)=(%d+)') do
    redis.call('HINCRBY', admd, code .. from, 0 - tonumber(hundredths))
    redis.call('HINCRBY', admd, code .. to, tonumber(hundredths))
  end
  redis.call('HSET', admw, qid, string.sub(demand, 1, 1) .. to .. '|' .. counts)
  return true
end

-- Admissions gone stale lately and those of them that came back, as counts that halve every
-- 30 s (stats: stale_n, stale_back_n, stale_ts), as lib/conversion.lua's recent outcomes do: an
-- opening's pages that the line outran (stale, then back a few seconds later) fade by the time a
-- tier runs out, and so does any other phase of a sale that is over.
local STALE_HALF_LIFE_MS = 30000

local function stale_recent(stats, now)
  local v = redis.call('HMGET', stats, 'stale_n', 'stale_back_n', 'stale_ts')
  local factor = 1
  if v[3] then
    factor = 0.5 ^ (math.max(0, now - tonumber(v[3])) / STALE_HALF_LIFE_MS)
  end
  return (tonumber(v[1]) or 0) * factor, (tonumber(v[2]) or 0) * factor
end

-- Notes `demoted` admissions gone stale and `back` stale ones that came back (delivered late,
-- booked, or refused for stock): in the recent counts and the sale's totals (stale_total,
-- stale_back, for the operator).
local function note_stale(stats, now, demoted, back)
  local n, b = stale_recent(stats, now)
  redis.call('HSET', stats, 'stale_n', tostring(n + demoted), 'stale_back_n', tostring(b + back),
    'stale_ts', now)
  if demoted > 0 then
    redis.call('HINCRBY', stats, 'stale_total', demoted)
  end
  if back > 0 then
    redis.call('HINCRBY', stats, 'stale_back', back)
  end
end

-- The share of recent stale admissions that came back, (back + 1) / (stale + 2): what stale
-- demand counts at. Those still stale count as not back: with the delivered window at the time
-- 95 % of buyers book within, few of them will be, while waiting for the absent to be reclaimed
-- (30-49 s) before counting them would leave the weight at its prior through the first half
-- minute of a sale, when a rehearsal's GA ran out (a half there held 100 GA back).
local function stale_weight(stats, now)
  local n, b = stale_recent(stats, now)
  return (b + 1) / (n + 2)
end

-- Delivery-to-booking times (ms): the upper bounds of the histogram's buckets, stats fields
-- form:1 .. form:12, and form:13 beyond the last.
local FORM_BUCKETS_MS = {1000, 2000, 3000, 5000, 8000, 13000, 21000, 34000, 55000, 89000,
  144000, 233000}
-- Fewer bookings than this tell nothing yet.
local FORM_FEWEST = 20

-- The histogram bucket of a delivery-to-booking time.
local function form_bucket(ms)
  for i, bound in ipairs(FORM_BUCKETS_MS) do
    if ms <= bound then
      return i
    end
  end
  return #FORM_BUCKETS_MS + 1
end

-- How long a delivered admission's demand stays fresh: the time within which 95 % of this sale's
-- buyers booked after delivery (their bucket's upper bound); `default` until FORM_FEWEST have
-- booked, `longest` when the 95th is beyond the last bucket. Bots book in seconds, people in a
-- minute or two: no one constant fits both.
local function fresh_after_delivery(stats, default, longest)
  local fields = {}
  for i = 1, #FORM_BUCKETS_MS + 1 do
    fields[i] = 'form:' .. i
  end
  local counts = redis.call('HMGET', stats, unpack(fields))
  local total = 0
  for i = 1, #counts do
    counts[i] = tonumber(counts[i]) or 0
    total = total + counts[i]
  end
  if total < FORM_FEWEST then
    return default
  end
  local seen = 0
  for i, bound in ipairs(FORM_BUCKETS_MS) do
    seen = seen + counts[i]
    if seen >= 0.95 * total then
      return math.min(bound, longest)
    end
  end
  return longest
end
