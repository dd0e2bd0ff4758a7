-- admit.lua: one bounded admission step for one event. Atomic, so any number of queue-workers
-- may call it at once without admitting anyone twice or beating the rate.
--
-- KEYS[1]  ev:{E}:cfg
-- KEYS[2]  ev:{E}:wait
-- KEYS[3]  ev:{E}:adm
-- KEYS[4]  ev:{E}:bucket   token bucket (tokens, ts)
-- KEYS[5]  ev:{E}:stats
-- KEYS[6]  ev:{E}:admsec
-- KEYS[7]  ev:{E}:gone
-- KEYS[8]  ev:{E}:alive:0
-- KEYS[9]  ev:{E}:alive:1
-- KEYS[10] ev:{E}:inv
-- KEYS[11] ev:{E}:seq
-- KEYS[12] ev:{E}:wish     queue id -> wish "GA=2;VIP=1"
-- KEYS[13] ev:{E}:parked   queue ids whose wish cannot be met, by place
-- KEYS[14] ev:{E}:admw     admitted queue id -> what it counts against the stock
-- KEYS[15] ev:{E}:admd     tier -> sum of admw, hundredths of tickets
-- KEYS[16] ev:{E}:holds
-- KEYS[17] ev:{E}:holdv
-- KEYS[16+2i] ev:{E}:want:<tier i>, KEYS[17+2i] ev:{E}:free:<tier i>, for every tier
-- KEYS[#KEYS-1] ev:{E}:dormant  silent entries out of the line (queue_dormancy.lua)
-- KEYS[#KEYS]   ev:{E}:admseen  admitted queue id -> its page's last sign of life since delivery
-- ARGV[1]  most entries this call may look at off the head (admitted, dropped, parked or passed)
-- ARGV[2]  the event's notice channel (ev:{E}:notices): the queue ids this step admitted are
--          published there, so gateways push the news to open streams at once
-- ARGV[3]  the delivery window (ms), unless cfg's delivery_window_ms says otherwise: an
--          admitted slot waits this long for its token's first delivery (deliver_token.lua then
--          gives it token_ttl_s from that moment), and is reclaimed with its demand and any hold
--          when nobody came for it
-- ARGV[3+i] tier i's code
--
-- Nobody is admitted before on_sale_ms (Redis's clock), nor before admit_after_ms (set after a
-- Redis data loss, so entries coming back from their receipts are in line before anyone behind
-- them is admitted). With the room on, a token bucket refills at admission_per_minute and holds at
-- most one second of admissions (over any minute at most rate + rate/60, within 2%), and
-- admitted-but-unfinished buyers never exceed max_active. With the room off, whoever is still in
-- line (waiting or pre-queued) is drained in order, at drain_per_minute or, when that is 0, as
-- fast as the caller repeats this step; max_active does not apply. Waiting entries not seen in
-- this or the previous liveness window are dropped when they reach the head instead of wasting an
-- admission; admitted_through records the highest place taken off the head, so a receipt for a
-- place at or below it is never put back in line. Entries already out of the line for their
-- silence (dormant) are reached as the head walks past their places: reached_through records the
-- highest place the head looked at (every dormant place, when it walked to the line's end with
-- admissions to spare), and queue_dormancy.lua drops the dormant entries at or below it.
--
-- The rate is a ceiling; the stock decides (room on or off). Per tier t, an entry is admitted only
-- while the tickets admitted buyers want stay within what is left plus headroom_pct:
--   sum over admitted of demand_t  <=  avail_t * (1 + headroom_pct/100)
-- where a buyer's demand is its wish. A buyer without a wish may take any tier, so it is gated by
-- the stock as a whole (the same sum over the tiers on sale) and counts the tickets one booking
-- takes on average (2 before the first booking), spread over the tiers on sale. With
-- hold_on_admission, admission instead reserves the wish at
-- once (a hold under the queue id, until the token expires; booking claims it) and needs the wish
-- on sale now; such buyers count no demand, their tickets are out of avail already.
-- An entry whose wish cannot be met at all (a tier has less left, held included, than wished) is
-- parked: out of the line's head, at its place, until the buyer changes the wish. An entry that
-- must wait for stock (held tickets may come back, admitted buyers may leave) stays in place, and
-- so does every later one that needs one of the same tiers (the line's order holds per tier);
-- later entries wanting other tiers go ahead, so one sold-out tier never stalls the rest.
--
-- Returns {admitted, dropped, expired, more, arrivals, admitted_through, parked}; `more` is 1 when
-- this step stopped at its bound with people it could admit now still in line.

local now = clock_ms()
local now_s = math.floor(now / 1000)
local room = read_fields(KEYS[1], {'enabled', 'admission_per_minute', 'max_active', 'paused',
  'token_ttl_s', 'on_sale_ms', 'alive_window_s', 'aw0', 'aw1', 'drain_per_minute',
  'admit_after_ms', 'admitted_through', 'headroom_pct', 'hold_on_admission', 'delivery_window_ms',
  'page_gone_ms', 'effective_per_minute'})
if not room.enabled then
  return {0, 0, 0, 0, 0, 0, 0}
end
local bound = tonumber(ARGV[1])
local arrivals = tonumber(redis.call('GET', KEYS[11])) or 0
local through = tonumber(room.admitted_through) or 0


local ADMSEEN = KEYS[#KEYS]
local expired = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, bound)
for _, qid in ipairs(expired) do
  redis.call('HSET', KEYS[7], qid, 'expired')
  redis.call('ZREM', KEYS[3], qid)
  redis.call('ZREM', ADMSEEN, qid)
  forget_demand(KEYS[14], KEYS[15], qid)
end
-- Delivered admissions whose page went silent give back their slot and demand; the token stays
-- valid (and a hold on admission stays until it ends), so a buyer who comes back still books.
local page_gone = 0
local silent_since = now - (tonumber(room.page_gone_ms) or 30000)
local silent = redis.call('ZRANGEBYSCORE', ADMSEEN, '-inf', silent_since, 'LIMIT', 0, bound)
for _, qid in ipairs(silent) do
  redis.call('ZREM', ADMSEEN, qid)
  if redis.call('ZREM', KEYS[3], qid) == 1 then
    forget_demand(KEYS[14], KEYS[15], qid)
    page_gone = page_gone + 1
  end
end
if page_gone > 0 then
  redis.call('HINCRBY', KEYS[5], 'page_gone_total', page_gone)
end

local enabled = room.enabled == '1'
local rate = tonumber(enabled and room.admission_per_minute or room.drain_per_minute) or 0
if enabled and room.effective_per_minute then
  -- Adaptive admission's rate (adapt_rate.lua), under the set one.
  rate = math.min(rate, tonumber(room.effective_per_minute))
end
-- Admitted buyers being refused for stock (a tier they want is gone): admissions slow to the
-- share of recent attempts that booked, down to a probe every 5 s, never a stop, so the rest of
-- the stock still sells and nobody is let in only to be told no.
if enabled then
  rate = refusal_limited(rate, KEYS[5], now)
end
local soldout = redis.call('HGET', KEYS[10], 'soldout') == '1'
-- A room turned off drains even if it was paused: off wins, `paused` waits for the room to be
-- turned on again.
if (enabled and room.paused == '1') or soldout or now < (tonumber(room.on_sale_ms) or 0)
    or now < (tonumber(room.admit_after_ms) or 0) then
  -- Nothing accrues while closed or paused, so opening or resuming does not release a burst.
  redis.call('HSET', KEYS[4], 'tokens', 0, 'ts', now)
  return {0, 0, #expired, 0, arrivals, through, 0}
end

-- How many the rate and max_active allow now; this step takes at most `bound` of them.
local allowed
local tokens = 0
if rate > 0 then
  local capacity = math.max(1, rate / 60)
  local bucket = redis.call('HMGET', KEYS[4], 'tokens', 'ts')
  local last = tonumber(bucket[2]) or now
  tokens = math.min(capacity, (tonumber(bucket[1]) or 0) + math.max(0, now - last) * rate / 60000)
  allowed = math.floor(tokens)
else
  allowed = math.huge
end
if enabled then
  -- Live tokens only: expired ones are cleared at most `bound` per step.
  local active = redis.call('ZCOUNT', KEYS[3], '(' .. now, '+inf')
  allowed = math.min(allowed, tonumber(room.max_active) - active)
end

-- The stock, per tier.
local codes, avail, held, demand, wanting, free, average = {}, {}, {}, {}, {}, {}, {}
local booked = tonumber(redis.call('HGET', KEYS[5], 'booked_total')) or 0
local sold_all = 0
for i = 1, #ARGV - 3 do
  local code = ARGV[3 + i]
  codes[i] = code
  local stock = redis.call('HMGET', KEYS[10], code .. ':avail', code .. ':held')
  avail[code] = tonumber(stock[1]) or 0
  held[code] = tonumber(stock[2]) or 0
  demand[code] = tonumber(redis.call('HGET', KEYS[15], code)) or 0
  wanting[code] = KEYS[16 + 2 * i]
  free[code] = KEYS[17 + 2 * i]
  if booked == 0 then
    average[code] = 0
  else
    local sold = tonumber(redis.call('HGET', KEYS[5], 'sold:' .. code)) or 0
    sold_all = sold_all + sold
    average[code] = math.floor(100 * sold / booked + 0.5)
  end
end
-- The tickets one booking takes, in hundredths: the sale's average over every tier, 2 before
-- the first booking.
local per_booking = 200
if booked > 0 then
  per_booking = math.max(100, math.floor(100 * sold_all / booked + 0.5))
end
local headroom = 100 + (tonumber(room.headroom_pct) or 10)
local hold_on_admission = room.hold_on_admission == '1'

local function parse_wish(text)
  if not text then
    return nil
  end
  local wish = {}
  for code, quantity in string.gmatch(text, '([^=;]+)=(%d+)') do
    wish[#wish + 1] = {code, tonumber(quantity)}
  end
  return wish
end

-- One entry at the head: 'park', 'wait' (with the tiers it waits for), 'hold', or 'count' with
-- what it will count against each tier (hundredths).
local function judge(wish)
  if wish then
    for _, want in ipairs(wish) do
      local code, quantity = want[1], want[2]
      if avail[code] == nil or avail[code] + held[code] < quantity then
        return 'park'
      end
    end
    local short = {}
    for _, want in ipairs(wish) do
      local code, quantity = want[1], want[2]
      if hold_on_admission then
        if avail[code] < quantity then
          short[#short + 1] = code
        end
      elseif demand[code] + 100 * quantity > avail[code] * headroom then
        short[#short + 1] = code
      end
    end
    if #short > 0 then
      return 'wait', short
    end
    if hold_on_admission then
      return 'hold'
    end
    local counts = {}
    for _, want in ipairs(wish) do
      counts[#counts + 1] = {want[1], 100 * want[2]}
    end
    return 'count', counts
  end
  -- No wish: the buyer may take any tier still on sale, so the gate is the stock as a whole
  -- (one scarce tier must not hold back buyers who may well want another). It counts what one
  -- booking takes (not a booking's worth per tier), spread over the tiers on sale as the sale's
  -- bookings spread over them (by what is left before any booking of them); at least one
  -- ticket and at most what is left in all.
  local on_sale, weights, weight, wanted, left = {}, {}, 0, 0, 0
  for _, code in ipairs(codes) do
    if avail[code] > 0 then
      on_sale[#on_sale + 1] = code
      weights[code] = average[code]
      weight = weight + average[code]
      wanted = wanted + demand[code]
      left = left + avail[code]
    end
  end
  if weight == 0 then
    for _, code in ipairs(on_sale) do
      weights[code] = avail[code]
    end
    weight = left
  end
  local counts, total = {}, per_booking
  for _, code in ipairs(on_sale) do
    counts[#counts + 1] = {code, math.floor(per_booking * weights[code] / weight + 0.5)}
  end
  on_sale = #on_sale > 0
  -- It cannot take more than is left: with one ticket left, one such buyer still goes in.
  if not on_sale or wanted + math.min(math.max(total, 100), left * 100) > left * headroom then
    return 'wait', {}
  end
  return 'count', counts
end

-- Reserves the wish for qid until `until_ms` (as reserve.lua does for a token).
local function hold(qid, wish, until_ms)
  local parts, quantities = {}, {}
  for _, want in ipairs(wish) do
    local code, quantity = want[1], want[2]
    local numbers = take_numbers(KEYS[10], free[code], code, quantity)
    avail[code] = avail[code] - quantity
    held[code] = held[code] + quantity
    parts[#parts + 1] = code .. '=' .. table.concat(numbers, ',')
    quantities[#quantities + 1] = code .. ':' .. quantity
  end
  local id = hold_id(qid)
  redis.call('ZADD', KEYS[16], until_ms, id)
  redis.call('HSET', KEYS[17], id, hold_value('admission', 'admission', parts))
  redis.call('HSET', KEYS[14], qid, 'h|' .. table.concat(quantities, ';'))
end

local function count(qid, kind, counts)
  local parts = {}
  for _, c in ipairs(counts) do
    -- Zero shares are not written ('-0' is no integer to Redis when given back).
    if c[2] > 0 then
      demand[c[1]] = demand[c[1]] + c[2]
      redis.call('HINCRBY', KEYS[15], c[1], c[2])
      parts[#parts + 1] = c[1] .. '=' .. c[2]
    end
  end
  redis.call('HSET', KEYS[14], qid, kind .. '|' .. table.concat(parts, ';'))
end

local function out_of_line(qid, wish)
  if wish then
    for _, want in ipairs(wish) do
      if wanting[want[1]] then
        redis.call('ZREM', wanting[want[1]], qid)
      end
    end
    redis.call('HDEL', KEYS[12], qid)
  end
end

local window_s = tonumber(room.alive_window_s) or 60
local w = math.floor(now_s / window_s)
local function seen(place)
  return seen_lately(room, w, {KEYS[8], KEYS[9]}, place)
end

local admitted, dropped, parked, passed = 0, 0, 0, 0
-- The highest place looked at, and whether the walk reached the line's end.
local reached, at_end = 0, false
-- Tiers an earlier entry waits for: later entries needing them wait too. `nowish_waits`: a
-- buyer without a wish waits, so do later ones without.
local waiting_for, nowish_waits = {}, false
local until_ms = now + (tonumber(room.delivery_window_ms) or tonumber(ARGV[3]))
local admitted_ids = {}
local done = false
while not done and admitted < allowed and admitted + dropped + parked + passed < bound do
  local page = math.min(allowed - admitted, bound - admitted - dropped - parked - passed)
  local head = redis.call('ZRANGE', KEYS[2], passed, passed + page - 1, 'WITHSCORES')
  if #head == 0 then
    at_end = true
    break
  end
  for i = 1, #head, 2 do
    local qid, place = head[i], tonumber(head[i + 1])
    if place > reached then
      reached = place
    end
    local wish = parse_wish(redis.call('HGET', KEYS[12], qid))
    local verdict, detail
    if not seen(place) then
      verdict = 'drop'
    else
      verdict, detail = judge(wish)
      if verdict ~= 'park' then
        local blocked = (wish == nil and nowish_waits)
        for _, want in ipairs(wish or {}) do
          if waiting_for[want[1]] then
            blocked = true
          end
        end
        if blocked then
          verdict, detail = 'wait', {}
        end
      end
    end
    if verdict == 'wait' then
      passed = passed + 1
      if wish then
        for _, want in ipairs(wish) do
          waiting_for[want[1]] = true
        end
      else
        nowish_waits = true
      end
      for _, code in ipairs(detail) do
        waiting_for[code] = true
      end
    else
      redis.call('ZREM', KEYS[2], qid)
      if place > through then
        through = place
      end
      if verdict == 'park' then
        redis.call('ZADD', KEYS[13], place, qid)
        parked = parked + 1
      else
        out_of_line(qid, wish)
        if verdict == 'drop' then
          redis.call('HSET', KEYS[7], qid, 'abandoned')
          dropped = dropped + 1
        else
          if verdict == 'hold' then
            hold(qid, wish, until_ms)
          else
            count(qid, wish and 'w' or 'a', detail)
          end
          redis.call('ZADD', KEYS[3], until_ms, qid)
          admitted = admitted + 1
          admitted_ids[admitted] = qid
        end
      end
    end
    if admitted >= allowed then
      done = true
      break
    end
  end
  if #head < 2 * page then
    at_end = not done
    break
  end
end
if at_end and admitted < allowed then
  -- Nobody live is left ahead of the dormant: the head reaches them all.
  local last = redis.call('ZRANGE', KEYS[#KEYS - 1], -1, -1, 'WITHSCORES')
  if last[2] and tonumber(last[2]) > reached then
    reached = tonumber(last[2])
  end
end
-- Dormant entries the head reached are judged now, as the head judges any entry: seen in this
-- liveness window or the last (a sign of life since they went dormant), back in line at their
-- place, taken at the next step; silent, dropped as abandoned.
if reached > 0 then
  local dormant = KEYS[#KEYS - 1]
  local met = redis.call('ZRANGEBYSCORE', dormant, '-inf', string.format('%.17g', reached),
    'WITHSCORES', 'LIMIT', 0, bound)
  for i = 1, #met, 2 do
    local qid, place = met[i], tonumber(met[i + 1])
    redis.call('ZREM', dormant, qid)
    if seen(place) then
      redis.call('ZADD', KEYS[2], string.format('%.17g', place), qid)
    else
      out_of_line(qid, parse_wish(redis.call('HGET', KEYS[12], qid)))
      redis.call('HSET', KEYS[7], qid, 'abandoned')
      dropped = dropped + 1
    end
  end
end
if reached > (tonumber(redis.call('HGET', KEYS[1], 'reached_through')) or 0) then
  redis.call('HSET', KEYS[1], 'reached_through', string.format('%.17g', reached))
end
local more = 0
if admitted < allowed and admitted + dropped + parked + passed >= bound
    and redis.call('ZCARD', KEYS[2]) > passed then
  more = 1
end

redis.call('HSET', KEYS[4], 'tokens', tostring(math.max(0, tokens - admitted)), 'ts', now)
if admitted + dropped + parked > 0 then
  -- %.17g keeps every integer place below 2^53 exact (tostring would round it).
  redis.call('HSET', KEYS[1], 'admitted_through', string.format('%.17g', through))
end
if admitted > 0 then
  -- "a|<Redis ms>|" and the raw 16-byte queue ids (see gateway/src/notices.rs).
  redis.call('SPUBLISH', ARGV[2], 'a|' .. now .. '|' .. table.concat(admitted_ids))
  redis.call('HINCRBY', KEYS[5], 'admitted_total', admitted)
  redis.call('HINCRBY', KEYS[6], now_s, admitted)
end
if dropped > 0 then
  redis.call('HINCRBY', KEYS[5], 'dropped_total', dropped)
end
if parked > 0 then
  redis.call('HINCRBY', KEYS[5], 'parked_total', parked)
end
-- Keep two minutes of per-second admissions.
if now_s % 10 == 0 then
  for _, second in ipairs(redis.call('HKEYS', KEYS[6])) do
    if tonumber(second) < now_s - 120 then
      redis.call('HDEL', KEYS[6], second)
    end
  end
end
return {admitted, dropped, #expired, more, arrivals, through, parked}
