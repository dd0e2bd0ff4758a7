-- release.lua: end a reservation that did not become a booking.
-- Runs after lib/holds.lua (end_hold, mark_if_sold_out), loaded before it.
--
-- KEYS[1]  ev:{E}:inv
-- KEYS[2]  ev:{E}:used
-- KEYS[3]  ev:{E}:holds
-- KEYS[4]  ev:{E}:holdv
-- KEYS[4+i] ev:{E}:free:<ARGV[5+i]>, one per tier of the event
-- ARGV[1]  the inventory epoch the reservation was made under
-- ARGV[2]  reservation id
-- ARGV[3]  "return" puts the numbers back on sale; "discard" drops them (they may be sold in
--          Postgres already; the reconciler will rebuild the event). Either way they are no
--          longer counted as held.
-- ARGV[4]  the attempt releasing it; empty for the sweeper, which may release whoever's hold
--          only while its deadline is past by Redis's clock: a retry that re-armed the hold
--          after the sweeper listed it owns it again (its write may commit)
-- ARGV[5]  the event's notice channel (ev:{E}:notices): told when the event sells out
-- ARGV[6..] tier codes, matching KEYS[5..]
--
-- Returns "released", "none" (no such hold: already confirmed or released), "stale" (the
-- inventory was rebuilt since; the rebuild already accounted for this reservation),
-- "superseded" (a retry with the same token continued the hold: it is that attempt's now) or
-- "rearmed" (the sweeper's release of a hold whose deadline is no longer past).

if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then
  return 'stale'
end
local held = redis.call('HGET', KEYS[4], ARGV[2])
if not held then
  return 'none'
end

local _, attempt, numbers = read_hold(held)
if ARGV[4] ~= '' and attempt ~= ARGV[4] then
  return 'superseded'
end
if ARGV[4] == '' then
  local deadline = tonumber(redis.call('ZSCORE', KEYS[3], ARGV[2]))
  if deadline and deadline > clock_ms() then
    return 'rearmed'
  end
end
local free = nil
if ARGV[3] == 'return' then
  free = {}
  for i = 6, #ARGV do
    free[ARGV[i]] = KEYS[i - 1]
  end
end
end_hold(KEYS[1], numbers, free)
redis.call('SREM', KEYS[2], ARGV[2])
redis.call('HDEL', KEYS[4], ARGV[2])
redis.call('ZREM', KEYS[3], ARGV[2])
if ARGV[3] ~= 'return' then
  -- Discarded numbers are neither held nor on sale: sold out if nothing else is.
  mark_if_sold_out(KEYS[1], ARGV[5])
end
return 'released'
