-- lib/demand.lua: what an admitted buyer counts against the stock (admit.lua's stock gate), and
-- how it stops counting. Spliced before every script when it is loaded (`lua_script!`): it
-- defines functions only, and reads no KEYS or ARGV of its own.
--
-- `admw` holds each admitted buyer's record: "w|GA=200;VIP=100" (a wish) or "a|GA=20;..." (no
-- wish: the sale's average), in hundredths of tickets, which `admd` sums per tier. A buyer
-- admitted with its wish held ("h|GA:2") counts nothing: its tickets are out of the stock
-- already, held under its queue id.
--
-- A record is fresh ("w|", "a|") while its buyer may well still book. Undelivered, until its
-- page is due (admfresh: queue id -> when its state next changes, admit.lua); then it is stale
-- undelivered ("w^|", "a^|"; admd "<code>^"), and once any page that is there would have polled
-- (the longest poll interval more) it counts nowhere ("w!|", "a!|"), its slot kept until the
-- delivery window ends. Delivered, for the time 95 % of this sale's buyers took from delivery to
-- booking (admdlv: queue id -> delivered when; `fresh_after_delivery`); then stale after
-- delivery ("w~|", "a~|"; admd "<code>~"), and after as long again it counts nowhere, its slot
-- kept until the page's silence reclaims it. The gate counts
-- each stale kind at the share of its kind that came back lately (`stale_weight`): a page the
-- line outran at an opening is not a buyer who left the booking form. A buyer who comes back
-- counts in full again. An absent buyer holds its slot until it is reclaimed, but not the stock:
-- at the end of a tier, a rehearsal's absent buyers (5 % of admissions, each holding 2.5 GA for
-- 30-49 s) counted more than was left and held the last 150 GA for 70 s.

-- A record's state: '' fresh, '^' stale undelivered, '~' stale after delivery, '!' counted
-- nowhere (undelivered past any live page's poll, or delivered twice the form time ago). The
-- admd field of a tier in a state is the tier's code and the state.
local function demand_state(record)
  local mark = string.sub(record, 2, 2)
  if mark == '|' then
    return ''
  end
  return mark
end

-- The tiers a record counts against and its hundredths of each, as an iterator of (code,
-- hundredths text): "a~|GA=250;VIP=10".
local function record_counts(record)
  return string.gmatch(string.match(record, '|(.*)$'), '([^=;]+)=(%d+)')
end

-- Takes `record` (a buyer's admw value, already removed) out of the sums in `admd`: the state
-- it was counted in ('h' for a held wish, which counts nothing).
local function uncount_demand(admd, record)
  if string.sub(record, 1, 2) == 'h|' then
    return 'h'
  end
  local state = demand_state(record)
  if state ~= '!' then
    for code, hundredths in record_counts(record) do
      redis.call('HINCRBY', admd, code .. state, 0 - tonumber(hundredths))
    end
  end
  return state
end

-- Stops counting `qid`'s demand: the state it was in ('h' for a held wish), false when it had no
-- record.
local function forget_demand(admw, admd, qid)
  local record = redis.call('HGET', admw, qid)
  if not record then
    return false
  end
  redis.call('HDEL', admw, qid)
  return uncount_demand(admd, record)
end

-- Moves `qid`'s counted demand to state `to`; the state it left, or nil when there was nothing to
-- move (no record, a held wish, or in `to` already).
local function restate_demand(admw, admd, qid, to)
  local demand = redis.call('HGET', admw, qid)
  if not demand or string.sub(demand, 1, 2) == 'h|' then
    return nil
  end
  local from = demand_state(demand)
  if from == to then
    return nil
  end
  for code, hundredths in record_counts(demand) do
    if from ~= '!' then
      redis.call('HINCRBY', admd, code .. from, 0 - tonumber(hundredths))
    end
    if to ~= '!' then
      redis.call('HINCRBY', admd, code .. to, tonumber(hundredths))
    end
  end
  redis.call('HSET', admw, qid, string.sub(demand, 1, 1) .. to .. string.match(demand, '|.*$'))
  return from
end

-- Per stale kind ('^' undelivered, '~' after delivery): admissions gone stale lately and those
-- of them that came back, as counts that halve every 30 s (stats: stale_n<kind>,
-- stale_back_n<kind>, stale_ts<kind>), as lib/conversion.lua's recent outcomes do, so a phase of
-- a sale that is over (an opening's outrun pages) fades.
local STALE_HALF_LIFE_MS = 30000

local function stale_recent(stats, now, kind)
  return decayed_counts(stats, 'stale_n' .. kind, 'stale_back_n' .. kind, 'stale_ts' .. kind,
    now, STALE_HALF_LIFE_MS)
end

-- Notes `demoted` admissions gone stale of `kind` and `back` of them that came back (delivered
-- late, booked, or refused for stock): in the recent counts, the sale's totals per kind
-- (stale_total<kind>, stale_back<kind>, what the recent share is drawn towards) and the sale's
-- totals of both (stale_total, stale_back, for the operator).
local function note_stale(stats, now, kind, demoted, back)
  local n, b = stale_recent(stats, now, kind)
  redis.call('HSET', stats, 'stale_n' .. kind, tostring(n + demoted),
    'stale_back_n' .. kind, tostring(b + back), 'stale_ts' .. kind, now)
  if demoted > 0 then
    redis.call('HINCRBY', stats, 'stale_total', demoted)
    redis.call('HINCRBY', stats, 'stale_total' .. kind, demoted)
  end
  if back > 0 then
    redis.call('HINCRBY', stats, 'stale_back', back)
    redis.call('HINCRBY', stats, 'stale_back' .. kind, back)
  end
end

-- The share of recent stale admissions of `kind` that came back: what that kind's stale demand
-- counts at. Those still stale count as not back: waiting for the absent to be reclaimed
-- (30-49 s) before counting them would leave the weight at its prior through the first half
-- minute of a sale, when a rehearsal's GA ran out (a half there held 100 GA back).
--
-- The recent share is drawn towards the whole sale's share of that kind, as two admissions'
-- worth of evidence: (back + 2m) / (stale + 2), m = (sale's back + 1) / (sale's stale + 2), a
-- half before anything is known. Drawn towards a half instead (Laplace's rule), none of 20 back
-- still counted one in 22 of a pile of absent pages: at GA's last ticket a rehearsal's 58
-- undelivered tickets counted 2.6 and held every buyer out for 11 s (only probes went in), though
-- none of the sale's 23 undelivered had ever come back.
local function stale_weight(stats, now, kind)
  local n, b = stale_recent(stats, now, kind)
  local sale = redis.call('HMGET', stats, 'stale_total' .. kind, 'stale_back' .. kind)
  local m = ((tonumber(sale[2]) or 0) + 1) / ((tonumber(sale[1]) or 0) + 2)
  -- At most in full: a come-back is counted undecayed while its going stale has decayed.
  return math.min(1, (b + 2 * m) / (n + 2))
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
