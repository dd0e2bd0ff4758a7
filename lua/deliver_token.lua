-- deliver_token.lua: an admitted entry's token is about to be delivered for the first time (the
-- first poll or stream message that carries it); its time to book starts now.
--
-- KEYS[1]  ev:{E}:adm      zset admitted queue id -> end of its slot (ms, Redis's clock)
-- KEYS[2]  ev:{E}:cfg      token_ttl_s
-- KEYS[3]  ev:{E}:holds    reservation deadlines (a hold on admission is keyed by the queue id)
-- KEYS[4]  ev:{E}:tok:<queue id>  the signed token, once stored
-- ARGV[1]  queue id (raw 16 bytes)
-- ARGV[2]  the queue id as a reservation id (the admission hold's id)
--
-- Admission keeps the slot for token_ttl_s plus a grace (admit.lua). Here the slot, and an
-- admission hold with it, end at min(now + token_ttl_s, that end): the buyer gets the whole
-- token_ttl_s from the moment the page could know, unless the page slept past the grace.
-- Returns the token's expiry (ms), or 0 when the slot is gone (expired or booked meanwhile).
-- Only ever shortens (LT): a second delivery racing the first computes the same end.

local slot = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]))
if not slot then
  return 0
end
if redis.call('EXISTS', KEYS[4]) == 1 then
  -- Delivered already (a concurrent first delivery won): its end stands.
  return slot
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl_ms = (tonumber(redis.call('HGET', KEYS[2], 'token_ttl_s')) or 300) * 1000
local expires = math.min(now + ttl_ms, slot)
if expires <= now then
  return 0
end
redis.call('ZADD', KEYS[1], 'XX', 'LT', expires, ARGV[1])
redis.call('ZADD', KEYS[3], 'XX', 'LT', expires, ARGV[2])
return expires
