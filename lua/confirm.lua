-- confirm.lua: a reservation's token has a booking in Postgres: its hold ends. The hold's numbers
-- stay sold when they are the booking's; when they are not (the token reserved afresh after its
-- booking was written: a rebuild or a release had dropped it from the used set), they were never
-- sold and go back on sale.
-- Runs after lib/holds.lua (end_hold, mark_if_sold_out), loaded before it.
--
-- KEYS[1]  ev:{E}:holds
-- KEYS[2]  ev:{E}:holdv
-- KEYS[3]  ev:{E}:adm     admitted buyers (the buyer's slot is freed)
-- KEYS[4]  ev:{E}:stats   booked_total, sold:<code> (tickets per tier, for the average a
--                         buyer without a wish is counted at, see admit.lua) and buyers:<code>
--                         (bookings with that tier: the live view's conversion per tier)
-- KEYS[5]  ev:{E}:inv     the tiers' held and available counts, and the sold-out flag
-- KEYS[6]  ev:{E}:admw    what each admitted buyer counts against the stock
-- KEYS[7]  ev:{E}:admd    its sum per tier
-- KEYS[7+i] ev:{E}:free:<ARGV[4+i]>, one per tier of the event
-- ARGV[1]  reservation id
-- ARGV[2]  queue id of the buyer (raw 16 bytes)
-- ARGV[3]  the event's notice channel (ev:{E}:notices): told when the event sells out
-- ARGV[4]  the booking's numbers as Postgres has them, "VIP=1,2;GA=7" (any order)
-- ARGV[5..] tier codes, matching KEYS[8..]
--
-- Returns 1 when the hold was the booking's (its numbers now sold), 2 when it held other numbers
-- (returned to sale), 0 when it was already gone (confirmed by another process, or dropped by a
-- rebuild); only a matching confirmation counts the booking.
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

local held = redis.call('HGET', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[2])
forget_demand(KEYS[6], KEYS[7], ARGV[2])
if not held then
  return 0
end
held = select(3, read_hold(held))

local booked, booked_size = members(ARGV[4])
local _, held_size = members(held)
local same = booked_size == held_size
for member in pairs(members(held)) do
  if not booked[member] then
    same = false
  end
end

if not same then
  local free = {}
  for i = 5, #ARGV do
    free[ARGV[i]] = KEYS[i + 3]
  end
  end_hold(KEYS[5], held, free)
  return 2
end

redis.call('HINCRBY', KEYS[4], 'booked_total', 1)
note_outcome(KEYS[4], clock_ms(), true)
for _, sold in ipairs(hold_counts(held)) do
  redis.call('HINCRBY', KEYS[4], 'sold:' .. sold[1], sold[2])
  redis.call('HINCRBY', KEYS[4], 'buyers:' .. sold[1], 1)
end
end_hold(KEYS[5], held, nil)
mark_if_sold_out(KEYS[5], ARGV[3])
return 1
