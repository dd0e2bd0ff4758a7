-- overdue_holds.lua: reservations whose hold deadline passed, by Redis's clock (the clock the
-- deadlines were set by, see reserve.lua), a bounded page at a time.
--
-- KEYS[1]  ev:{E}:holds
-- ARGV[1]  most ids to return
--
-- Returns the reservation ids.

local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms, 'LIMIT', 0, tonumber(ARGV[1]))
