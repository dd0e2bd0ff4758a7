-- admission_give_back.lua: a buyer refused for stock gives back its admission slot and the
-- demand it counted, so max_active is never filled by people already told no. Its entry token
-- stays valid (booking checks the signature and the used-token set, not the slot): it may still
-- book what is left. Loaded after lib/demand.lua.
--
-- KEYS[1] ev:{E}:adm    admitted queue id -> slot's end (ms)
-- KEYS[2] ev:{E}:admw   what each admitted buyer counts against the stock
-- KEYS[3] ev:{E}:admd   its sum per tier
-- KEYS[4] ev:{E}:stats  given_back_total, and the recent outcomes (lib/conversion.lua)
-- ARGV[1] queue id (raw 16 bytes)
--
-- Returns 1 when a slot was given back, 0 when there was none (given back already, booked, left
-- or expired).

if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then
  return 0
end
-- A stale admission that came to book teaches the gate (lib/demand.lua).
-- Stale after delivery, or past it (counted nowhere): back either way.
local was = forget_demand(KEYS[2], KEYS[3], ARGV[1])
if was == '~' or was == '!' then
  note_stale(KEYS[4], clock_ms(), '~', 0, 1)
end
redis.call('HINCRBY', KEYS[4], 'given_back_total', 1)
note_outcome(KEYS[4], clock_ms(), false)
return 1
