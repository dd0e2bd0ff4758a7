-- queue_cadence.lua: an entry near the head of the line was just told when to poll again. Were
-- it admitted now, its page would come for the token within two such intervals; admit.lua
-- reclaims the admission (slot, demand, any hold) once this time passes undelivered, instead of
-- after the longest window any page may need.
--
-- KEYS[1] ev:{E}:deliverby  queue id -> deliver by (Redis ms)
-- ARGV[1] queue id (raw 16 bytes)
-- ARGV[2] the window (ms): two of the intervals it was told and a grace
--
-- Returns the time written.

local by = clock_ms() + tonumber(ARGV[2])
redis.call('HSET', KEYS[1], ARGV[1], by)
return by
