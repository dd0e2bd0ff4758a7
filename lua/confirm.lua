-- confirm.lua: a reservation became a booking in Postgres; its numbers stay sold.
--
-- KEYS[1]  ev:{E}:holds
-- KEYS[2]  ev:{E}:holdv
-- KEYS[3]  ev:{E}:adm     admitted buyers (the buyer's slot is freed)
-- KEYS[4]  ev:{E}:stats
-- ARGV[1]  reservation id
-- ARGV[2]  queue id of the buyer (raw 16 bytes)
--
-- Returns 1 when the hold existed, 0 when it was already gone (confirmed by another process, or
-- dropped by a rebuild); only the first confirmation counts the booking.

local had = redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[2])
if had == 1 then
  redis.call('HINCRBY', KEYS[4], 'booked_total', 1)
end
return had
