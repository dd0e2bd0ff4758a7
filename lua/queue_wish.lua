-- queue_wish.lua: set (or clear) the tiers and quantities a waiting buyer wants. The wish is kept
-- per tier by place, so how many people ahead want a tier is one ZCOUNT (queue_entry.lua), and
-- admission counts it against the stock (admit.lua). A parked entry (its wish could not be met)
-- goes back in line at its own place with a wish that can.
--
-- KEYS[1]  ev:{E}:wait
-- KEYS[2]  ev:{E}:parked
-- KEYS[3]  ev:{E}:adm
-- KEYS[4]  ev:{E}:wish
-- KEYS[5]  ev:{E}:inv
-- KEYS[6]  ev:{E}:dormant  (a wish is a sign of life: a dormant entry goes back in line)
-- KEYS[7]  ev:{E}:cfg      admitted_through, reached_through: a dormant entry the head passed
--                          is not taken back
-- KEYS[7+i] ev:{E}:want:<tier i>
-- ARGV[1]  queue id (raw 16 bytes)
-- ARGV[2]  the wish, "GA=2;VIP=1" (codes among ARGV[3..], quantities >= 1), or '' to clear it
-- ARGV[2+i] tier i's code
--
-- Returns {"ok"}, {"not_found"}, {"not_waiting"} (admitted already), or
-- {"short", code, wished, available + held, ...} for every tier that cannot meet it: nothing
-- changed.

local qid = ARGV[1]
local place = redis.call('ZSCORE', KEYS[1], qid)
-- Out of line (parked, or dormant): the set it is in, to move it back in line once the wish is set.
local out = nil
if not place then
  place = redis.call('ZSCORE', KEYS[2], qid)
  if place then
    out = KEYS[2]
  end
end
if not place then
  place = redis.call('ZSCORE', KEYS[6], qid)
  local marks = redis.call('HMGET', KEYS[7], 'admitted_through', 'reached_through')
  local passed = math.max(tonumber(marks[1]) or 0, tonumber(marks[2]) or 0)
  if place and tonumber(place) <= passed then
    place = nil
  elseif place then
    out = KEYS[6]
  end
end
if not place then
  if redis.call('ZSCORE', KEYS[3], qid) then
    return {'not_waiting'}
  end
  return {'not_found'}
end

local wanting = {}
for i = 1, #ARGV - 2 do
  wanting[ARGV[2 + i]] = KEYS[7 + i]
end
local short = {'short'}
for code, quantity in string.gmatch(ARGV[2], '([^=;]+)=(%d+)') do
  local stock = redis.call('HMGET', KEYS[5], code .. ':avail', code .. ':held')
  local left = (tonumber(stock[1]) or 0) + (tonumber(stock[2]) or 0)
  if left < tonumber(quantity) then
    short[#short + 1] = code
    short[#short + 1] = tonumber(quantity)
    short[#short + 1] = left
  end
end
if #short > 1 then
  return short
end

for code in string.gmatch(redis.call('HGET', KEYS[4], qid) or '', '([^=;]+)=%d+') do
  if wanting[code] then
    redis.call('ZREM', wanting[code], qid)
  end
end
if ARGV[2] == '' then
  redis.call('HDEL', KEYS[4], qid)
else
  redis.call('HSET', KEYS[4], qid, ARGV[2])
  for code in string.gmatch(ARGV[2], '([^=;]+)=%d+') do
    redis.call('ZADD', wanting[code], place, qid)
  end
end
if out then
  redis.call('ZREM', out, qid)
  redis.call('ZADD', KEYS[1], place, qid)
end
return {'ok'}
