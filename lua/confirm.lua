-- confirm.lua: reservations whose tokens have bookings in Postgres: their holds end. A hold's
-- numbers stay sold when they are its booking's; when they are not (the token reserved afresh
-- after its booking was written: a rebuild or a release had dropped it from the used set), they
-- were never sold and go back on sale.
-- One call confirms every booking of one event a writer's batch committed (the booking service
-- gathers them, `booking/src/confirmer.rs`): a script call costs Redis more than the work of one
-- confirmation, so a batch pays it once.
-- Runs after lib/holds.lua (end_hold, mark_if_sold_out), loaded before it.
--
-- KEYS[1]  ev:{E}:holds
-- KEYS[2]  ev:{E}:holdv
-- KEYS[3]  ev:{E}:adm     admitted buyers (the buyer's slot is freed)
-- KEYS[4]  ev:{E}:stats   booked_total, sold:<code> (tickets per tier, for the average a
--                         buyer without a wish is counted at, see admit.lua), buyers:<code>
--                         (bookings with that tier: the live view's conversion per tier) and
--                         took:<code>:<n> (bookings that took n of that tier: what a buyer
--                         without a wish can take of a tier's last tickets, admission/gate.lua)
-- KEYS[5]  ev:{E}:inv     the tiers' held and available counts, and the sold-out flag
-- KEYS[6]  ev:{E}:admw    what each admitted buyer counts against the stock
-- KEYS[7]  ev:{E}:admd    its sum per tier (fresh and stale, lib/demand.lua)
-- KEYS[8]  ev:{E}:admdlv  admitted queue id -> when its token was delivered: the time to book
--                         goes into the histogram admit.lua reads (stats form:<i>)
-- KEYS[8+i] ev:{E}:free:<code i>, one per tier of the event
-- ARGV[1]  the event's notice channel (ev:{E}:notices): told when the event sells out
-- ARGV[2]  n, how many tiers the event has
-- ARGV[3..2+n] tier codes, matching KEYS[9..]
-- ARGV[3+n..] triples, one per booking: reservation id, queue id of the buyer (raw 16 bytes),
--          the booking's numbers as Postgres has them, "VIP=1,2;GA=7" (any order)
--
-- Returns one figure per booking, in order: 1 when the hold was the booking's (its numbers now
-- sold), 2 when it held other numbers (returned to sale), 0 when it was already gone (confirmed
-- by another process, or dropped by a rebuild); only a matching confirmation counts the booking.
--
-- The event is sold out when no tier has anything left or held: held numbers may come back, and
-- until they are sold the line keeps waiting for them.

-- "VIP=1,2;GA=7" as a set of "VIP=1" members, and its size.
local function members(numbers)
  local set, size = {}, 0
  for part in string.gmatch(numbers, '[^;]+') do
    local code, list = string.match(part, '^(.-)=(.*)$')
    for n in string.gmatch(list, '%d+') do
      set[code .. '=' .. n] = true
      size = size + 1
    end
  end
  return set, size
end

local tiers = tonumber(ARGV[2])
local free = {}
for i = 1, tiers do
  free[ARGV[2 + i]] = KEYS[8 + i]
end
local now = clock_ms()

-- The batch's reservation ids, buyers and numbers. Each key is read and written once for the
-- whole batch, not once a booking: a command crossing from the script into Redis costs about
-- as much as the work it does here.
local jtis, qids, booked_numbers = {}, {}, {}
for i = 3 + tiers, #ARGV, 3 do
  jtis[#jtis + 1] = ARGV[i]
  qids[#qids + 1] = ARGV[i + 1]
  booked_numbers[#booked_numbers + 1] = ARGV[i + 2]
end
if #jtis == 0 then
  return {}
end
local holds = redis.call('HMGET', KEYS[2], unpack(jtis))
redis.call('HDEL', KEYS[2], unpack(jtis))
redis.call('ZREM', KEYS[1], unpack(jtis))
redis.call('ZREM', KEYS[3], unpack(qids))
local demands = redis.call('HMGET', KEYS[6], unpack(qids))
local delivered = redis.call('ZMSCORE', KEYS[8], unpack(qids))

-- What this batch sold, counted once for all of it: bookings, tickets and bookings per tier,
-- and bookings per tier and count ("GA:2").
local booked_count, sold, buyers, took = 0, {}, {}, {}
-- Buyers whose demand had gone stale and who booked after all, and how long buyers took from
-- delivery to booking, by histogram bucket (lib/demand.lua).
local stale_back, form_times = 0, {}
-- A buyer or a reservation met again in the batch was dealt with at its first (a reservation's
-- hold was gone by its second, as when each was confirmed by a call of its own).
local buyer_seen, jti_seen = {}, {}
local demand_gone, delivery_gone = {}, {}

-- Confirms the i-th booking's hold: 1, 2 or 0 as above.
local function confirm(i)
  local qid = qids[i]
  if not buyer_seen[qid] then
    buyer_seen[qid] = true
    if demands[i] then
      demand_gone[#demand_gone + 1] = qid
      -- Stale after delivery, or past it (counted nowhere): back either way.
      local was = uncount_demand(KEYS[7], demands[i])
      if was == '~' or was == '!' then
        stale_back = stale_back + 1
      end
    end
    if delivered[i] then
      delivery_gone[#delivery_gone + 1] = qid
      local bucket = form_bucket(now - tonumber(delivered[i]))
      form_times[bucket] = (form_times[bucket] or 0) + 1
    end
  end
  local held = holds[i]
  if not held or jti_seen[jtis[i]] then
    return 0
  end
  jti_seen[jtis[i]] = true
  held = select(3, read_hold(held))
  local booked, booked_size = members(booked_numbers[i])
  local held_set, held_size = members(held)
  local same = booked_size == held_size
  for member in pairs(held_set) do
    if not booked[member] then
      same = false
    end
  end
  if not same then
    end_hold(KEYS[5], held, free)
    return 2
  end
  booked_count = booked_count + 1
  for _, tier in ipairs(hold_counts(held)) do
    sold[tier[1]] = (sold[tier[1]] or 0) + tier[2]
    buyers[tier[1]] = (buyers[tier[1]] or 0) + 1
    local size = tier[1] .. ':' .. tier[2]
    took[size] = (took[size] or 0) + 1
  end
  return 1
end

local out = {}
for i = 1, #jtis do
  out[i] = confirm(i)
end
if #demand_gone > 0 then
  redis.call('HDEL', KEYS[6], unpack(demand_gone))
end
if #delivery_gone > 0 then
  redis.call('ZREM', KEYS[8], unpack(delivery_gone))
end
if stale_back > 0 then
  note_stale(KEYS[4], now, '~', 0, stale_back)
end
for bucket, count in pairs(form_times) do
  redis.call('HINCRBY', KEYS[4], 'form:' .. bucket, count)
end
if booked_count > 0 then
  redis.call('HINCRBY', KEYS[4], 'booked_total', booked_count)
  note_outcome(KEYS[4], now, true, booked_count)
  for code, tickets in pairs(sold) do
    -- The sold numbers are no longer held (what end_hold does for one hold, for the batch).
    redis.call('HINCRBY', KEYS[5], code .. ':held', -tickets)
    redis.call('HINCRBY', KEYS[4], 'sold:' .. code, tickets)
    redis.call('HINCRBY', KEYS[4], 'buyers:' .. code, buyers[code])
  end
  for size, bookings in pairs(took) do
    redis.call('HINCRBY', KEYS[4], 'took:' .. size, bookings)
  end
  -- Only a sale can sell the event out; looked at once for the whole batch.
  mark_if_sold_out(KEYS[5], ARGV[1])
end
return out
