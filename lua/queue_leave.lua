-- queue_leave.lua: the buyer leaves the line (or gives back an admission it will not use): the
-- place and any admission slot are freed at once, and later polls answer not found.
--
-- KEYS[1]  ev:{E}:wait
-- KEYS[2]  ev:{E}:adm
-- KEYS[3]  ev:{E}:gone
-- KEYS[4]  ev:{E}:tok:<queue id>
-- KEYS[5]  ev:{E}:stats
-- ARGV[1]  queue id (raw 16 bytes)
--
-- Returns 1 when the entry was in line or admitted, 0 when there was nothing to leave.

local qid = ARGV[1]
local in_line = redis.call('ZREM', KEYS[1], qid)
local admitted = redis.call('ZREM', KEYS[2], qid)
redis.call('DEL', KEYS[4])
if in_line + admitted == 0 then
  return 0
end
redis.call('HSET', KEYS[3], qid, 'left')
redis.call('HINCRBY', KEYS[5], 'left_total', 1)
return 1
