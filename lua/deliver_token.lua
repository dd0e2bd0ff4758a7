-- deliver_token.lua: an admitted entry's token is about to be delivered for the first time (the
-- first poll or stream message that carries it); its time to book starts now.
--
-- KEYS[1]  ev:{E}:adm      zset admitted queue id -> end of its slot (ms, Redis's clock)
-- KEYS[2]  ev:{E}:cfg      token_ttl_s
-- KEYS[3]  ev:{E}:holds    reservation deadlines (a hold on admission is keyed by the queue id)
-- KEYS[4]  ev:{E}:tok:<queue id>  the signed token, once stored
-- KEYS[5]  ev:{E}:admseen  admitted queue id -> its page's last sign of life (ms)
-- KEYS[6]  ev:{E}:admw     what each admitted buyer counts against the stock (lib/demand.lua)
-- KEYS[7]  ev:{E}:admd     its sum per tier, fresh and stale
-- KEYS[8]  ev:{E}:admfresh undelivered admitted queue id -> when its demand's state next changes
-- KEYS[9]  ev:{E}:stats    stale_back: stale admissions that came back
-- KEYS[10] ev:{E}:admdlv   delivered admitted queue id -> when (admit.lua reads how long ago)
-- ARGV[1]  queue id (raw 16 bytes)
-- ARGV[2]  the queue id as a reservation id (the admission hold's id)
--
-- Admission keeps the slot only for the delivery window (admit.lua). Here the slot, and an
-- admission hold with it, are set to end token_ttl_s from now: the buyer gets the whole time
-- from the moment the page could know. Delivery is the page's first sign of life as an admitted
-- entry. Returns the token's expiry (ms), or 0 when the slot is gone (reclaimed undelivered, or
-- booked meanwhile). Only ever lengthens (GT): a second delivery racing the first ends within
-- milliseconds of it.

local slot = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]))
if not slot then
  return 0
end
if redis.call('EXISTS', KEYS[4]) == 1 then
  -- Delivered already (a concurrent first delivery won): its end stands.
  return slot
end
local now = clock_ms()
local ttl_ms = (tonumber(redis.call('HGET', KEYS[2], 'token_ttl_s')) or 300) * 1000
local expires = now + ttl_ms
redis.call('ZADD', KEYS[1], 'XX', 'GT', expires, ARGV[1])
redis.call('ZADD', KEYS[3], 'XX', 'GT', expires, ARGV[2])
redis.call('ZADD', KEYS[5], now, ARGV[1])
-- The buyer is here: its demand is fresh until this sale's buyers have booked after delivery
-- (admit.lua), and one counted as stale or nowhere (its page came after it was due) counts in
-- full again and teaches the gate (lib/demand.lua).
local was = restate_demand(KEYS[6], KEYS[7], ARGV[1], '')
if was == '^' or was == '!' then
  note_stale(KEYS[9], now, '^', 0, 1)
end
redis.call('ZREM', KEYS[8], ARGV[1])
redis.call('ZADD', KEYS[10], now, ARGV[1])
return math.max(expires, slot)
