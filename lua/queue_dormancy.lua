-- queue_dormancy.lua: take entries whose page stopped showing signs of life out of the line, so
-- the people behind them are not told they stand behind them; drop those the head has passed.
--
-- A sign of life (a poll, a stream's check, a refused poll's flushed mark) sets the entry's bit
-- in the liveness bitmap of the current window (queue_entry.lua, mark_alive.lua). An entry with
-- no bit in this window nor the one before goes to `dormant`, keeping its place: its next poll
-- puts it back (queue_entry.lua). A dormant entry at or below where the head reached
-- (reached_through) was passed while silent: dropped as abandoned, as admit.lua drops a silent
-- entry it reaches.
--
-- KEYS[1] ev:{E}:cfg      alive_window_s, aw0, aw1 (which window each bitmap holds),
--                         admitted_through, reached_through (see admit.lua)
-- KEYS[2] ev:{E}:wait
-- KEYS[3] ev:{E}:dormant
-- KEYS[4] ev:{E}:alive:0
-- KEYS[5] ev:{E}:alive:1
-- KEYS[6] ev:{E}:gone
-- KEYS[7] ev:{E}:wish
-- KEYS[8] ev:{E}:stats
-- KEYS[8+i] ev:{E}:want:<tier i>
-- KEYS[#KEYS] ev:{E}:deliverby (queue_cadence.lua: when its page would come for a token)
-- ARGV[1] the place after which to look ('' from the head)
-- ARGV[2] most entries to look at, in line and among the dormant each
--
-- Returns {cursor, made_dormant, dropped}: `cursor` ('' once the end of the line was reached)
-- is where the next call goes on.

local now_s = math.floor(clock_ms() / 1000)
local room = read_fields(KEYS[1], {'alive_window_s', 'aw0', 'aw1', 'admitted_through',
  'reached_through'})
local window_s = tonumber(room.alive_window_s) or 60
local w = math.floor(now_s / window_s)
local bound = tonumber(ARGV[2])
local tiers = #KEYS - 9

local function exact(place)
  return string.format('%.17g', place)
end

local function out_of_line(qid)
  for i = 1, tiers do
    redis.call('ZREM', KEYS[8 + i], qid)
  end
  redis.call('HDEL', KEYS[7], qid)
  redis.call('HDEL', KEYS[#KEYS], qid)
end

-- The bitmaps are read only when both hold the windows they must (this one and the one before):
-- after a loss, or in a line nobody polled for a window, silence proves nothing yet.
local current, previous = w % 2, (w - 1) % 2
local marks_hold = room['aw' .. current] == tostring(w)
  and room['aw' .. previous] == tostring(w - 1)
local function seen(place)
  return seen_lately(room, w, {KEYS[4], KEYS[5]}, place)
end

-- Dormant entries the head reached that admit.lua left (beyond its bound): judged as it judges
-- them, seen back in line at their place, silent dropped as abandoned.
local dropped = 0
local passed = math.max(tonumber(room.admitted_through) or 0, tonumber(room.reached_through) or 0)
if passed > 0 then
  local met = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', exact(passed), 'WITHSCORES', 'LIMIT', 0,
    bound)
  for i = 1, #met, 2 do
    local qid, place = met[i], met[i + 1]
    redis.call('ZREM', KEYS[3], qid)
    if marks_hold and seen(place) then
      redis.call('ZADD', KEYS[2], place, qid)
    else
      out_of_line(qid)
      redis.call('HSET', KEYS[6], qid, 'abandoned')
      dropped = dropped + 1
    end
  end
  if dropped > 0 then
    redis.call('HINCRBY', KEYS[8], 'dropped_total', dropped)
  end
end

if not marks_hold then
  return {'', 0, dropped}
end

local from = '-inf'
if ARGV[1] ~= '' then
  from = '(' .. ARGV[1]
end
local page = redis.call('ZRANGEBYSCORE', KEYS[2], from, '+inf', 'WITHSCORES', 'LIMIT', 0, bound)
local made_dormant = 0
local last = ''
for i = 1, #page, 2 do
  local qid, place = page[i], page[i + 1]
  last = place
  if not seen(place) then
    redis.call('ZREM', KEYS[2], qid)
    redis.call('ZADD', KEYS[3], place, qid)
    made_dormant = made_dormant + 1
  end
end
if made_dormant > 0 then
  redis.call('HINCRBY', KEYS[8], 'dormant_total', made_dormant)
end
if #page < 2 * bound then
  last = ''
end
return {last, made_dormant, dropped}
