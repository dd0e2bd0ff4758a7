-- queue_leave.lua: the buyer leaves the line (or gives back an admission it will not use): the
-- place, its wish and any admission slot are freed at once, any admission hold returns to sale
-- at the sweeper's next pass, and later polls answer not found. A page that is closed asks for
-- a leave after a grace instead: a poll within it (the page was reloaded) cancels it.
--
-- KEYS[1]  ev:{E}:wait
-- KEYS[2]  ev:{E}:adm
-- KEYS[3]  ev:{E}:gone
-- KEYS[4]  ev:{E}:tok:<queue id>
-- KEYS[5]  ev:{E}:stats
-- KEYS[6]  ev:{E}:parked
-- KEYS[7]  ev:{E}:wish
-- KEYS[8]  ev:{E}:admw
-- KEYS[9]  ev:{E}:admd
-- KEYS[10] ev:{E}:leaving
-- KEYS[11] ev:{E}:holds
-- KEYS[12] ev:{E}:cfg      leave_pending: set while a leave waits out its grace, so polls look
--                          for one to cancel only then (queue_entry.lua)
-- KEYS[13] ev:{E}:dormant  entries out of line for want of signs of life
-- KEYS[13+i] ev:{E}:want:<tier i>
-- KEYS[#KEYS] ev:{E}:deliverby (queue_cadence.lua: when its page would come for a token)
-- ARGV[1]  queue id (raw 16 bytes)
-- ARGV[2]  "now"; "later" (after the grace); "due" (the worker: leave if still asked and due)
-- ARGV[3]  later: the grace, ms
-- ARGV[4]  the queue id's admission hold id (see admit.lua)
-- ARGV[4+i] tier i's code
--
-- Returns 1 when the entry was in line or admitted (for "later": is now due to leave), 0 when
-- there was nothing to leave.

local qid = ARGV[1]
local now = clock_ms()

if ARGV[2] == 'later' then
  if not (redis.call('ZSCORE', KEYS[1], qid) or redis.call('ZSCORE', KEYS[6], qid)
      or redis.call('ZSCORE', KEYS[13], qid) or redis.call('ZSCORE', KEYS[2], qid)) then
    return 0
  end
  redis.call('ZADD', KEYS[10], now + tonumber(ARGV[3]), qid)
  redis.call('HSET', KEYS[12], 'leave_pending', '1')
  return 1
end
if ARGV[2] == 'due' then
  local due = redis.call('ZSCORE', KEYS[10], qid)
  if not due or tonumber(due) > now then
    return 0
  end
end
redis.call('ZREM', KEYS[10], qid)
if redis.call('ZCARD', KEYS[10]) == 0 then
  redis.call('HDEL', KEYS[12], 'leave_pending')
end

local in_line = redis.call('ZREM', KEYS[1], qid) + redis.call('ZREM', KEYS[6], qid)
  + redis.call('ZREM', KEYS[13], qid)
local admitted = redis.call('ZREM', KEYS[2], qid)
redis.call('DEL', KEYS[4])
for i = 1, #ARGV - 4 do
  redis.call('ZREM', KEYS[13 + i], qid)
end
redis.call('HDEL', KEYS[7], qid)
redis.call('HDEL', KEYS[#KEYS], qid)
forget_demand(KEYS[8], KEYS[9], qid)
if admitted == 1 then
  -- Unless a booking claimed it already, the admission hold is now overdue.
  redis.call('ZADD', KEYS[11], 'XX', 0, ARGV[4])
end
if in_line + admitted == 0 then
  return 0
end
redis.call('HSET', KEYS[3], qid, 'left')
redis.call('HINCRBY', KEYS[5], 'left_total', 1)
return 1
