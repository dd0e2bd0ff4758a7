-- queue_entry.lua: join the waiting room, or poll one's place in it (and, after Redis lost the
-- line, put an entry back at the place its signed receipt names).
--
-- KEYS[1]  ev:{E}:cfg      settings (enabled, token_ttl_s, on_sale_ms, alive_window_s), the
--                          queue's generation (gen), admitted_through, the liveness windows
--                          (aw0, aw1), and leave_pending while a closed page's leave waits
-- KEYS[2]  ev:{E}:wait     zset queue id -> place (pre-queue: lot * 2^28 + arrival; after the
--                          opening: 2^52 + arrival; see ticketing/src/queue/place.rs)
-- KEYS[3]  ev:{E}:seq      arrival counter
-- KEYS[4]  ev:{E}:alive:0  liveness bitmap by arrival number, even windows
-- KEYS[5]  ev:{E}:alive:1  liveness bitmap by arrival number, odd windows
-- KEYS[6]  ev:{E}:adm      zset admitted queue id -> token expiry (ms)
-- KEYS[7]  ev:{E}:gone     hash queue id -> why it left
-- KEYS[8]  ev:{E}:tok:<queue id>  the signed entry token, if any
-- KEYS[9]  ev:{E}:inv      inventory (the sold-out flag; a parked entry's tiers)
-- KEYS[10] ev:{E}:stats
-- KEYS[11] ev:{E}:admsec
-- KEYS[12] ev:{E}:restored set of queue ids put back from a receipt in this generation
-- KEYS[13] ev:{E}:wish     queue id -> wish "GA=2;VIP=1"
-- KEYS[14] ev:{E}:parked   entries whose wish cannot be met, by place (see admit.lua)
-- KEYS[15] ev:{E}:admw     admitted queue id -> its wish as admitted ("h|GA:2" when held)
-- KEYS[16] ev:{E}:leaving  entries that asked to leave after a grace: a poll cancels it
-- KEYS[17] ev:{E}:dormant  entries out of line for want of signs of life (queue_dormancy.lua)
-- KEYS[18] ev:{E}:admseen  admitted queue id -> its page's last sign of life (a poll is one)
-- KEYS[18+i] ev:{E}:want:<tier i>
-- ARGV[1]  "join" or "poll"
-- ARGV[2]  queue id (raw 16 bytes)
-- ARGV[3]  join: the lot drawn for this visitor, 1 .. 2^24 - 1 (used if it joins before the
--          opening); poll: the place a verified receipt names, or ''
-- ARGV[4]  poll: the generation that receipt was issued in, or ''
-- ARGV[4+i] tier i's code
--
-- Returns {state, position, expires_ms, token, place, generation, wish, ahead, admitted_as}
-- where state is one of pre_queue, waiting, admitted, expired, sold_out, not_found, no_config,
-- full. `position` is 1-based once the sale is open (0 otherwise); `token` is false when the
-- admitted entry has no signed token yet; `place` (0 unless in line) and `generation` go into the
-- place receipt. In line: `wish` (or ''), and per tier in ARGV's order how many people ahead
-- wish for it (-1 for a tier not in the wish, and before the opening, when the order is not
-- told). Admitted: `admitted_as`, the admw entry.
--
-- Whether a join belongs to the pre-queue is decided here, by Redis's clock against on_sale_ms:
-- the opening needs no script at all, so nothing can stall it. A waiting entry is looked up first:
-- in a hot sale nearly every call is a waiting poll, and this keeps it to a handful of commands.

local OPENED = 4503599627370496     -- 2^52: places at or above were given after the opening

local now = clock_ms()
local now_s = math.floor(now / 1000)
local room = read_fields(KEYS[1], {'enabled', 'token_ttl_s', 'on_sale_ms', 'alive_window_s', 'gen',
  'admitted_through', 'admit_after_ms', 'aw0', 'aw1', 'leave_pending', 'reached_through'})
if not room.enabled then
  return {'no_config', 0, 0, false, 0, ''}
end
local qid = ARGV[2]
local before_opening = now < (tonumber(room.on_sale_ms) or 0)
local generation = room.gen
if not generation then
  -- Settings written by a release before generations: give the line one now (microseconds of
  -- Redis's clock; any value differing from a later one will do).
  local t = redis.call('TIME')
  generation = t[1] .. string.format('%06d', tonumber(t[2]))
  redis.call('HSETNX', KEYS[1], 'gen', generation)
  generation = redis.call('HGET', KEYS[1], 'gen')
end

local function mark_alive(place)
  local window_s = tonumber(room.alive_window_s) or 60
  local w = math.floor(now_s / window_s)
  local parity = w % 2
  -- The window's mark was read with the settings (one command less on every poll).
  if room['aw' .. parity] ~= tostring(w) then
    redis.call('DEL', KEYS[4 + parity])
    redis.call('HSET', KEYS[1], 'aw' .. parity, w)
  end
  redis.call('SETBIT', KEYS[4 + parity], place % ARRIVALS, 1)
end

-- Sold out: no tier has anything left or held (confirm.lua sets it). Each tier's stock is the
-- event's, not the entry's: the gateway reads it apart, at most every 100 ms, not on every poll.
local soldout = redis.call('HGET', KEYS[9], 'soldout') == '1'
local TIERS = #ARGV - 4

local function exact(place)
  -- %.17g keeps every place below 2^53 exact (tostring would round it).
  return string.format('%.17g', place)
end

-- People ahead wanting a tier, for the tiers of the wish only (what the buyer asked about, and
-- no cost on the polls of buyers without one): per tier in ARGV's order, the count or -1.
local function wanted_ahead(place, wish)
  local out = {}
  for i = 1, TIERS do
    local code = ARGV[4 + i]
    if before_opening or not string.find(';' .. wish, ';' .. code .. '=', 1, true) then
      out[i] = -1
    else
      out[i] = redis.call('ZCOUNT', KEYS[18 + i], '-inf', '(' .. exact(place))
    end
  end
  return out
end

local function in_line(place, position)
  mark_alive(place)
  -- A poll is a live page: a leave it asked for on closing was a reload. (Only looked for while
  -- some leave is pending, so most polls stay read-only.)
  if room.leave_pending then
    redis.call('ZREM', KEYS[16], qid)
  end
  if soldout then
    return {'sold_out', 0, 0, false, 0, generation}
  end
  local wish = redis.call('HGET', KEYS[13], qid) or ''
  if before_opening then
    return {'pre_queue', 0, 0, false, place, generation, wish, wanted_ahead(place, wish)}
  end
  return {'waiting', position(), 0, false, place, generation, wish, wanted_ahead(place, wish)}
end

local function rank()
  return redis.call('ZRANK', KEYS[2], qid) + 1
end

local place = redis.call('ZSCORE', KEYS[2], qid)
if place then
  return in_line(tonumber(place), rank)
end

place = redis.call('ZSCORE', KEYS[14], qid)
if place then
  -- Parked: back in line at its place once its wish can be met again (tickets came back).
  place = tonumber(place)
  local met = true
  for code, quantity in string.gmatch(redis.call('HGET', KEYS[13], qid) or '', '([^=;]+)=(%d+)') do
    local stock = redis.call('HMGET', KEYS[9], code .. ':avail', code .. ':held')
    if (tonumber(stock[1]) or 0) + (tonumber(stock[2]) or 0) < tonumber(quantity) then
      met = false
    end
  end
  if met then
    redis.call('ZREM', KEYS[14], qid)
    redis.call('ZADD', KEYS[2], exact(place), qid)
    return in_line(place, rank)
  end
  return in_line(place, function()
    return redis.call('ZCOUNT', KEYS[2], '-inf', '(' .. exact(place)) + 1
  end)
end

place = redis.call('ZSCORE', KEYS[17], qid)
if place then
  -- Dormant (its page showed no sign of life for a while): a poll or a join is one, so back in
  -- line at its place, unless the head has passed it meanwhile (queue_dormancy.lua drops those
  -- as abandoned, as admit.lua drops a silent entry it reaches).
  place = tonumber(place)
  local head = math.max(tonumber(room.admitted_through) or 0, tonumber(room.reached_through) or 0)
  if place > head then
    redis.call('ZREM', KEYS[17], qid)
    redis.call('ZADD', KEYS[2], exact(place), qid)
    redis.call('HINCRBY', KEYS[10], 'revived_total', 1)
    return in_line(place, rank)
  end
  redis.call('ZREM', KEYS[17], qid)
  for i = 1, TIERS do
    redis.call('ZREM', KEYS[18 + i], qid)
  end
  redis.call('HDEL', KEYS[13], qid)
  redis.call('HSET', KEYS[7], qid, 'abandoned')
  redis.call('HINCRBY', KEYS[10], 'dropped_total', 1)
end

local token = redis.call('GET', KEYS[8])
local expires = redis.call('ZSCORE', KEYS[6], qid)
if token then
  -- The slot ends when the token does (deliver_token.lua set both): every poll tells the same
  -- end. Once booked, the slot is gone and the token's own time to live tells it.
  local until_ms = tonumber(expires) or (now + redis.call('PTTL', KEYS[8]))
  if expires then
    redis.call('ZADD', KEYS[18], 'XX', now, qid)
  end
  return {'admitted', 0, until_ms, token, 0, generation, '', {},
    redis.call('HGET', KEYS[15], qid) or ''}
end
if expires and tonumber(expires) > now then
  return {'admitted', 0, tonumber(expires), false, 0, generation, '', {},
    redis.call('HGET', KEYS[15], qid) or ''}
end

if ARGV[1] == 'poll' then
  local why = redis.call('HGET', KEYS[7], qid)
  if why == 'left' then
    -- The buyer left the line: its entry is no more (a join starts again at the back).
    return {'not_found', 0, 0, false, 0, generation}
  end
  local left = expires or why
  -- A receipt for an entry that is nowhere (not in line, parked, admitted or gone) means Redis
  -- lost it since the receipt was issued: from another generation, the whole line was lost
  -- (flush, restart); from this one, a failover to a replica that had not yet received the
  -- last joins. An entry at or below admitted_through had already reached the head (admitted or
  -- dropped) before the loss; each queue id comes back at most once per generation.
  local receipt_place = tonumber(ARGV[3])
  if receipt_place and not left
      and receipt_place > (tonumber(room.admitted_through) or 0)
      and redis.call('SADD', KEYS[12], qid) == 1 then
    redis.call('ZADD', KEYS[2], receipt_place, qid)
    local arrival = receipt_place % ARRIVALS
    if (tonumber(redis.call('GET', KEYS[3])) or 0) < arrival then
      redis.call('SET', KEYS[3], arrival)
    end
    redis.call('HINCRBY', KEYS[10], 'restored_total', 1)
    if ARGV[4] == generation then
      redis.call('HINCRBY', KEYS[10], 'restored_lagged_total', 1)
    end
    return in_line(receipt_place, rank)
  end
  if soldout then
    return {'sold_out', 0, 0, false, 0, generation}
  end
  if left then
    return {'expired', 0, 0, false, 0, generation}
  end
  return {'not_found', 0, 0, false, 0, generation}
end

if soldout then
  return {'sold_out', 0, 0, false, 0, generation}
end

-- A join: a returning visitor whose place expired starts again at the back.
redis.call('HDEL', KEYS[7], qid)
if room.enabled ~= '1' and not before_opening and now >= (tonumber(room.admit_after_ms) or 0)
    and redis.call('ZCARD', KEYS[2]) == 0 then
  -- No waiting room, nobody still draining from the last one, and not in the grace after a
  -- loss (when the line may yet come back from its receipts): straight in.
  local until_ms = now + tonumber(room.token_ttl_s) * 1000
  redis.call('ZADD', KEYS[6], until_ms, qid)
  redis.call('HINCRBY', KEYS[10], 'admitted_total', 1)
  redis.call('HINCRBY', KEYS[11], now_s, 1)
  return {'admitted', 0, until_ms, false, 0, generation}
end
local arrival = redis.call('INCR', KEYS[3])
if arrival >= ARRIVALS then
  redis.call('DECR', KEYS[3])
  return {'full', 0, 0, false, 0, generation}
end
local new_place
if before_opening then
  new_place = tonumber(ARGV[3]) * ARRIVALS + arrival
else
  new_place = OPENED + arrival
end
redis.call('ZADD', KEYS[2], exact(new_place), qid)
return in_line(new_place, rank)
