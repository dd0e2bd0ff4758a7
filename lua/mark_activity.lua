-- mark_activity.lua: marks an event active now, on Redis's clock (every process compares marks
-- by the same clock; a mark never moves back).
--
-- KEYS[1]  events:activity   sorted set of event id by last activity (ms)
-- ARGV[1]  the event id
--
-- Returns the mark (ms).

local now = clock_ms()
redis.call('ZADD', KEYS[1], 'GT', now, ARGV[1])
return now
