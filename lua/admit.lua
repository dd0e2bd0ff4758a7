-- admit.lua: one bounded admission step for one event. Atomic, so any number of queue-workers
-- may call it at once without admitting anyone twice or beating the rate.
--
-- Its concerns are spliced before it (`ticketing::queue::admit`): admission/reclaim.lua (absent
-- admissions give back what they hold), admission/pace.lua (the rate and max_active),
-- admission/gate.lua (the stock gate), admission/record.lua (notices and statistics). This file
-- is the walk of the line's head.
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
-- KEYS[#KEYS-4] ev:{E}:admfresh undelivered admitted queue id -> when its demand's state next
--               changes (lib/demand.lua)
-- KEYS[#KEYS-3] ev:{E}:admdlv   delivered admitted queue id -> when it was delivered
-- KEYS[#KEYS-2] ev:{E}:dormant  silent entries out of the line (queue_dormancy.lua)
-- KEYS[#KEYS-1] ev:{E}:admseen  admitted queue id -> its page's last sign of life since delivery
-- KEYS[#KEYS]   ev:{E}:deliverby queue id -> deliver by (queue_cadence.lua, at its polls near
--               the head): an admission is given until then (at least DELIVERY_GRACE_MS, at
--               most the delivery window) to be delivered
-- ARGV[1]  most entries this call may look at off the head (admitted, dropped, parked or passed)
-- ARGV[2]  the event's notice channel (ev:{E}:notices): the queue ids this step admitted are
--          published there, so gateways push the news to open streams at once
-- ARGV[3]  the delivery window (ms), unless cfg's delivery_window_ms says otherwise: an
--          admitted slot waits at most this long for its token's first delivery (deliver_token.lua
--          then gives it token_ttl_s from that moment), and is reclaimed with its demand and any
--          hold when nobody came for it; less when its entry polled near the head (deliverby)
-- ARGV[4]  the least an admission whose entry polled near the head is given to be delivered
--          (DELIVERY_GRACE_MS), however long ago that poll
-- ARGV[5]  how long the demand of an admission whose entry never polled near the head stays
--          fresh undelivered, unless cfg's fresh_undelivered_ms says otherwise (lib/demand.lua)
-- ARGV[6]  how long a delivered admission's demand stays fresh before this sale's bookings tell
--          (cfg's fresh_after_delivery_ms unless it says otherwise)
-- ARGV[7]  how long an undelivered admission's demand stays stale before it counts nowhere: the
--          longest interval a live page waits between polls (LONGEST_POLL_MS)
-- ARGV[7+i] tier i's code
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
-- The rate is a ceiling; the stock decides (room on or off): each entry at the head is judged by
-- the stock gate (admission/gate.lua), over what is left plus headroom_pct.
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
  'page_gone_ms', 'effective_per_minute', 'fresh_undelivered_ms', 'fresh_after_delivery_ms'})
if not room.enabled then
  return {0, 0, 0, 0, 0, 0, 0}
end
local k = {cfg = KEYS[1], wait = KEYS[2], adm = KEYS[3], bucket = KEYS[4], stats = KEYS[5],
  admsec = KEYS[6], gone = KEYS[7], inv = KEYS[10], seq = KEYS[11], wish = KEYS[12],
  parked = KEYS[13], admw = KEYS[14], admd = KEYS[15], holds = KEYS[16], holdv = KEYS[17],
  admfresh = KEYS[#KEYS - 4], admdlv = KEYS[#KEYS - 3], dormant = KEYS[#KEYS - 2],
  admseen = KEYS[#KEYS - 1], deliverby = KEYS[#KEYS], wanting = {},
  free = {}}
local codes = {}
for i = 1, #ARGV - 7 do
  local code = ARGV[7 + i]
  codes[i] = code
  k.wanting[code] = KEYS[16 + 2 * i]
  k.free[code] = KEYS[17 + 2 * i]
end
local bound = tonumber(ARGV[1])
local arrivals = tonumber(redis.call('GET', k.seq)) or 0
local through = tonumber(room.admitted_through) or 0

local expired = reclaim_expired(k, now, bound)
reclaim_silent_pages(k, room, now, bound)
demote_stale(k, room, now, bound,
  tonumber(room.fresh_after_delivery_ms) or tonumber(ARGV[6]), tonumber(ARGV[7]))

local enabled = room.enabled == '1'
local rate, nowish_rate = admission_rate(k, room, now)
local soldout = redis.call('HGET', k.inv, 'soldout') == '1'
-- A room turned off drains even if it was paused: off wins, `paused` waits for the room to be
-- turned on again.
if (enabled and room.paused == '1') or soldout or now < (tonumber(room.on_sale_ms) or 0)
    or now < (tonumber(room.admit_after_ms) or 0) then
  bucket_empty(k, now)
  return {0, 0, expired, 0, arrivals, through, 0}
end

-- How many the rate and max_active allow now; this step takes at most `bound` of them.
local tokens, allowed = admissions_allowed(k, room, rate, now)
-- Buyers without a wish may be slower still (the sale's history says few of them can book).
local nw_tokens, nw_allowed = nowish_allowed(k, rate, nowish_rate, now)
local gate = stock_gate(k, room, codes, now)

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

local function out_of_line(qid, wish)
  if wish then
    for _, want in ipairs(wish) do
      if k.wanting[want[1]] then
        redis.call('ZREM', k.wanting[want[1]], qid)
      end
    end
    redis.call('HDEL', k.wish, qid)
  end
end

local window_s = tonumber(room.alive_window_s) or 60
local w = math.floor(now_s / window_s)
local function seen(place)
  return seen_lately(room, w, {KEYS[8], KEYS[9]}, place)
end

local admitted, dropped, parked, passed, nowish = 0, 0, 0, 0, 0
-- One probe a step at most, and only when nobody went in for a while (admission/gate.lua).
local probe = gate.probe_due(now)
local probes = 0
-- The highest place looked at, and whether the walk reached the line's end.
local reached, at_end = 0, false
-- Tiers an earlier entry waits for: later entries needing them wait too. `nowish_waits`: a
-- buyer without a wish waits, so do later ones without.
local waiting_for, nowish_waits = {}, false
local until_ms = now + (tonumber(room.delivery_window_ms) or tonumber(ARGV[3]))
-- The page of an entry that polled near the head comes within two of the intervals it was told:
-- its admission waits that long (ARGV[4] at least), not the whole window, and its demand is
-- fresh as long. An entry that never polled near the head is an absent page or one the line
-- outran: its slot waits the whole window, its demand is fresh for fresh_undelivered_ms only
-- (lib/demand.lua; a page that comes later counts in full again), except in the opening's first
-- ARGV[7]: pre-queued pages are told to come back within it (spread so they do not come at
-- once), so the line outruns most of them there and they are due until it ends. Returns both
-- times.
local fresh_ms = tonumber(room.fresh_undelivered_ms) or tonumber(ARGV[5])
local pre_queue_due = (tonumber(room.on_sale_ms) or 0) + tonumber(ARGV[7])
local function deliver_by(qid)
  local by = tonumber(redis.call('HGET', k.deliverby, qid))
  if not by then
    return until_ms, math.min(until_ms, math.max(now + fresh_ms, pre_queue_due))
  end
  redis.call('HDEL', k.deliverby, qid)
  by = math.min(until_ms, math.max(by, now + tonumber(ARGV[4])))
  return by, by
end
local admitted_ids = {}
local done = false
while not done and admitted < allowed and admitted + dropped + parked + passed < bound do
  local page = math.min(allowed - admitted, bound - admitted - dropped - parked - passed)
  local head = redis.call('ZRANGE', k.wait, passed, passed + page - 1, 'WITHSCORES')
  if #head == 0 then
    at_end = true
    break
  end
  for i = 1, #head, 2 do
    local qid, place = head[i], tonumber(head[i + 1])
    if place > reached then
      reached = place
    end
    local wish = parse_wish(redis.call('HGET', k.wish, qid))
    local verdict, detail
    if not seen(place) then
      verdict = 'drop'
    else
      verdict, detail = gate.judge(wish)
      if verdict ~= 'park' then
        local blocked = (wish == nil and nowish_waits)
        for _, want in ipairs(wish or {}) do
          if waiting_for[want[1]] then
            blocked = true
          end
        end
        -- The first entry the gate holds back, not behind another that waits, is the probe.
        if verdict == 'wait' and not blocked and probe and admitted == 0 then
          verdict, detail = gate.judge(wish, true)
          if verdict == 'count' then
            probes = 1
            probe = false
          end
        end
        if blocked or (wish == nil and verdict == 'count' and nowish >= nw_allowed) then
          verdict, detail = 'wait', {}
          probes = 0
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
      redis.call('ZREM', k.wait, qid)
      if place > through then
        through = place
      end
      if verdict == 'park' then
        redis.call('ZADD', k.parked, place, qid)
        parked = parked + 1
      else
        out_of_line(qid, wish)
        if verdict == 'drop' then
          redis.call('HDEL', k.deliverby, qid)
          redis.call('HSET', k.gone, qid, 'abandoned')
          dropped = dropped + 1
        else
          local by, fresh_until = deliver_by(qid)
          if verdict == 'hold' then
            gate.hold(qid, wish, by)
          else
            gate.count(qid, wish and 'w' or 'a', detail)
            redis.call('ZADD', k.admfresh, fresh_until, qid)
          end
          if wish == nil then
            nowish = nowish + 1
          end
          redis.call('ZADD', k.adm, by, qid)
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
  local last = redis.call('ZRANGE', k.dormant, -1, -1, 'WITHSCORES')
  if last[2] and tonumber(last[2]) > reached then
    reached = tonumber(last[2])
  end
end
-- Dormant entries the head reached are judged now, as the head judges any entry: seen in this
-- liveness window or the last (a sign of life since they went dormant), back in line at their
-- place, taken at the next step; silent, dropped as abandoned.
if reached > 0 then
  local met = redis.call('ZRANGEBYSCORE', k.dormant, '-inf', string.format('%.17g', reached),
    'WITHSCORES', 'LIMIT', 0, bound)
  for i = 1, #met, 2 do
    local qid, place = met[i], tonumber(met[i + 1])
    redis.call('ZREM', k.dormant, qid)
    if seen(place) then
      redis.call('ZADD', k.wait, string.format('%.17g', place), qid)
    else
      out_of_line(qid, parse_wish(redis.call('HGET', k.wish, qid)))
      redis.call('HSET', k.gone, qid, 'abandoned')
      dropped = dropped + 1
    end
  end
end
if reached > (tonumber(redis.call('HGET', k.cfg, 'reached_through')) or 0) then
  redis.call('HSET', k.cfg, 'reached_through', string.format('%.17g', reached))
end
local more = 0
if admitted < allowed and admitted + dropped + parked + passed >= bound
    and redis.call('ZCARD', k.wait) > passed then
  more = 1
end

bucket_spend(k, tokens, admitted, nw_tokens, nowish, now)
if admitted + dropped + parked > 0 then
  -- %.17g keeps every integer place below 2^53 exact (tostring would round it).
  redis.call('HSET', k.cfg, 'admitted_through', string.format('%.17g', through))
end
record_step(k, ARGV[2], now, admitted_ids, dropped, parked, probes)
return {admitted, dropped, expired, more, arrivals, through, parked}
