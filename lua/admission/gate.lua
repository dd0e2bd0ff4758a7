-- admission/gate.lua: the stock gate, what admit.lua asks of each entry at the head. Spliced
-- into admit.lua only; `k` holds admit.lua's keys by name.
--
-- Per tier t, an entry is admitted only while the tickets admitted buyers want stay within what
-- is left plus headroom_pct:
--   sum over admitted of demand_t  <=  avail_t * (1 + headroom_pct/100)
-- where a buyer's demand is its wish, and demand gone stale (the buyer likely gone: its page not
-- come when due, or not booked in the time this sale's buyers take; lib/demand.lua) counts at
-- the share of its kind that came back lately. A buyer without a wish may take any tier: it
-- counts the tickets one booking takes on average (2 before the first booking), spread over the
-- tiers on sale as the sale's bookings spread over them, each share gated by its own tier. With
-- hold_on_admission, admission instead reserves the wish at once (a hold under the queue id;
-- booking claims it) and needs the wish on sale now; such buyers count no demand, their tickets
-- are out of avail already.
--
-- The gate never stops the line while something is on sale: admitted buyers may count the whole
-- stock and never book it (gone without a word, until their admission is reclaimed). After
-- PROBE_AFTER_MS without an admission, the first entry the gate holds back whose tickets are on
-- sale now goes in as a probe, counted like any other.

-- The longest the gate holds the line while tickets are on sale: under the 5 s the operator is
-- promised, with the worker's 0.1 s tick on top (lib/conversion.lua's probes, the same pace).
local PROBE_AFTER_MS = 4500

-- A tier's stock below which a buyer's count may exceed what is left: a wish is at most an
-- event's max_per_booking, which is at most 100 tickets (the catalog's bound).
local LAST_TICKETS = 100

-- The least share of a tier's tickets `within_reach` gives: at most ten times as many buyers
-- without a wish try for a tier's last tickets at once as would for that many more, however few
-- of the sale's bookings took so few (the refusals one step can cause stay bounded).
local LEAST_REACH = 0.1

-- The share of tier `code`'s tickets a buyer without a wish can still take with `left` of it on
-- sale: of the tickets the sale's bookings took of it (confirm.lua's `took:<code>:<n>`, bookings
-- that took n), those in bookings of at most `left`, with two bookings of the average size in
-- reach added as a prior (a handful of bookings says little), at least LEAST_REACH; 1 while no
-- booking says (none yet, or some confirmed before the counts were kept: `buyers:<code>`
-- outnumbers them). All or nothing: a buyer who wants more of a tier than is left takes none of
-- it, so with one GA left a buyer of a crowd taking 1-4 GA takes a tenth of its share, not one
-- ticket (a rehearsal's last ticket waited 7 s on three such buyers counted at one each, each
-- refused in turn).
local function within_reach(stats, code, left)
  local fields = {'buyers:' .. code}
  for n = 1, LAST_TICKETS do
    fields[n + 1] = 'took:' .. code .. ':' .. n
  end
  local counts = redis.call('HMGET', stats, unpack(fields))
  local bookings, tickets, reached = 0, 0, 0
  for n = 1, LAST_TICKETS do
    local took = tonumber(counts[n + 1]) or 0
    bookings = bookings + took
    tickets = tickets + n * took
    if n <= left then
      reached = reached + n * took
    end
  end
  if tickets == 0 or bookings < (tonumber(counts[1]) or 0) then
    return 1
  end
  local prior = 2 * tickets / bookings
  return math.max(LEAST_REACH, (reached + prior) / (tickets + prior))
end

-- What admitted buyers count against each tier of `ending` (code -> true), each buyer at most
-- what is left of it now (`avail`, tickets) and a buyer without a wish at most what such a buyer
-- takes of it now (`nowish`, hundredths; `within_reach`): fresh, undelivered stale and delivered
-- stale, in hundredths, per tier. A buyer's count is set when it is admitted; once the tier falls
-- further it can still take no more than is left, and its full count held out the buyers a
-- tier's last ticket is offered to (a rehearsal: one buyer counting 2.49 GA with one left kept
-- the line to the 4 s probes for 7 s). Reads every admitted buyer's record once (at most
-- max_active), so only for tiers at their last tickets whose sums exceed what is left or whose
-- buyers without a wish may want more than is left.
local function capped_demand(admw, ending, avail, nowish)
  local sums = {}
  for code in pairs(ending) do
    sums[code] = {[''] = 0, ['^'] = 0, ['~'] = 0}
  end
  for _, record in ipairs(redis.call('HVALS', admw)) do
    local state = demand_state(record)
    -- A held wish counts nothing (its tickets are out of avail already), nor does '!'.
    if string.sub(record, 1, 2) ~= 'h|' and state ~= '!' then
      local wishless = string.sub(record, 1, 1) == 'a'
      for code, hundredths in record_counts(record) do
        local sum = sums[code]
        if sum then
          local most = avail[code] * 100
          if wishless then
            most = math.min(most, nowish[code] or 0)
          end
          sum[state] = sum[state] + math.min(tonumber(hundredths), most)
        end
      end
    end
  end
  return sums
end

-- The gate for this step, over the tiers `codes`: reads the stock and what admitted buyers count
-- against it once, and keeps both current as it admits.
local function stock_gate(k, room, codes, now)
  local avail, held, demand, average = {}, {}, {}, {}
  local booked = tonumber(redis.call('HGET', k.stats, 'booked_total')) or 0
  -- Stale demand (lib/demand.lua) counts at the share of its kind that came back lately.
  local undelivered, unbooked = stale_weight(k.stats, now, '^'), stale_weight(k.stats, now, '~')
  -- What a tier's fresh, undelivered stale and delivered stale sums count at together.
  local function weighed(fresh, absent, late)
    return fresh + undelivered * absent + unbooked * late
  end
  local sold_all = 0
  -- Per tier: the sum of every admitted buyer's count as recorded.
  local counted_sum = {}
  for _, code in ipairs(codes) do
    local stock = redis.call('HMGET', k.inv, code .. ':avail', code .. ':held')
    avail[code] = tonumber(stock[1]) or 0
    held[code] = tonumber(stock[2]) or 0
    local counted = redis.call('HMGET', k.admd, code, code .. '^', code .. '~')
    local fresh, absent, unbooked_sum = tonumber(counted[1]) or 0, tonumber(counted[2]) or 0,
      tonumber(counted[3]) or 0
    demand[code] = weighed(fresh, absent, unbooked_sum)
    counted_sum[code] = fresh + absent + unbooked_sum
    if booked == 0 then
      average[code] = 0
    else
      local sold = tonumber(redis.call('HGET', k.stats, 'sold:' .. code)) or 0
      sold_all = sold_all + sold
      average[code] = math.floor(100 * sold / booked + 0.5)
    end
  end
  -- The share of a tier's tickets a buyer without a wish can still take (`within_reach`), read
  -- once a step and only when asked: a step that judges no such buyer and caps nothing reads
  -- none of the sale's bookings by size.
  local reach_read = {}
  local function reach(code)
    if reach_read[code] == nil then
      reach_read[code] = 1
      if booked > 0 and avail[code] > 0 and avail[code] <= LAST_TICKETS then
        reach_read[code] = within_reach(k.stats, code, avail[code])
      end
    end
    return reach_read[code]
  end
  -- The tickets one booking takes, in hundredths: the sale's average over every tier, 2 before
  -- the first booking.
  local per_booking = 200
  if booked > 0 then
    per_booking = math.max(100, math.floor(100 * sold_all / booked + 0.5))
  end
  local headroom = 100 + (tonumber(room.headroom_pct) or 10)
  local hold_on_admission = room.hold_on_admission == '1'

  -- What a buyer without a wish counts against each tier on sale now (hundredths; none when
  -- nothing is on sale), and the room each tier has for such buyers. It counts what one booking
  -- takes (not a booking's worth per tier), spread over the tiers on sale as the sale's bookings
  -- spread over them (by what is left before any booking of them): a tier every buyer takes
  -- gates such buyers ticket for ticket, one a tenth of them take by a tenth of a ticket each,
  -- and one nobody took holds nobody back. (Gating by the stock as a whole let a tier few take,
  -- VIP, stand in for the one all take, GA: near GA's end a rehearsal admitted VIP's worth of
  -- buyers who all wanted GA.) At a tier's last tickets the share is what such a buyer can
  -- still take of it (`within_reach`), and at most what is left.
  local function nowish_shares()
    local on_sale, weights, weight, left = {}, {}, 0, 0
    for _, code in ipairs(codes) do
      if avail[code] > 0 then
        on_sale[#on_sale + 1] = code
        weights[code] = average[code]
        weight = weight + average[code]
        left = left + avail[code]
      end
    end
    if #on_sale == 0 then
      return nil
    end
    if weight == 0 then
      for _, code in ipairs(on_sale) do
        weights[code] = avail[code]
      end
      weight = left
    end
    local shares, rooms = {}, {}
    for _, code in ipairs(on_sale) do
      shares[code] = math.min(math.floor(per_booking * weights[code] / weight * reach(code) + 0.5),
        avail[code] * 100)
      -- The last few tickets of a tier are offered to a booking's worth (of what can still be
      -- taken of it) more than they fill, so more than one buyer at a time: one who wants more
      -- than is left is refused whether alone or together, and alone each try costs a round
      -- trip (in a rehearsal the last 5 GA took 28 s one buyer after another). Beyond a
      -- booking's worth / headroom tickets it changes nothing.
      rooms[code] = math.max(avail[code] * headroom,
        avail[code] * 100 + math.floor(per_booking * reach(code) + 0.5))
    end
    return shares, rooms, on_sale
  end

  -- Only where the counts add up to more than is left, or buyers without a wish may want more
  -- than is left, can a buyer's count exceed what it may take (and where nothing is counted,
  -- there is nothing to cap).
  local ending, any_ending = {}, false
  for _, code in ipairs(codes) do
    if avail[code] > 0 and avail[code] <= LAST_TICKETS and counted_sum[code] > 0
        and (counted_sum[code] > avail[code] * 100 or reach(code) < 1) then
      ending[code] = true
      any_ending = true
    end
  end
  if any_ending then
    local nowish = nowish_shares() or {}
    for code, sum in pairs(capped_demand(k.admw, ending, avail, nowish)) do
      demand[code] = weighed(sum[''], sum['^'], sum['~'])
    end
  end
  local gate = {}

  -- Whether this step may admit a probe: nobody was admitted for PROBE_AFTER_MS.
  function gate.probe_due(now)
    local last = tonumber(redis.call('HGET', k.stats, 'last_admit_ms'))
    return last == nil or now - last >= PROBE_AFTER_MS
  end

  -- One entry at the head: 'park', 'wait' (with the tiers it waits for), 'hold', or 'count' with
  -- what it will count against each tier (hundredths). `probe`: what admitted buyers count is
  -- not held against it, only what is on sale now.
  function gate.judge(wish, probe)
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
        elseif probe then
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
    -- No wish: the buyer may take any tier still on sale, and each tier must have room for its
    -- share (`nowish_shares`).
    local shares, rooms, on_sale = nowish_shares()
    if not shares then
      return 'wait', {}
    end
    local counts = {}
    for _, code in ipairs(on_sale) do
      local share = shares[code]
      if not probe and share > 0 and demand[code] + share > rooms[code] then
        return 'wait', {}
      end
      counts[#counts + 1] = {code, share}
    end
    return 'count', counts
  end

  -- Reserves the wish for qid until `until_ms` (as reserve.lua does for a token).
  function gate.hold(qid, wish, until_ms)
    local parts, quantities = {}, {}
    for _, want in ipairs(wish) do
      local code, quantity = want[1], want[2]
      local numbers = take_numbers(k.inv, k.free[code], code, quantity)
      avail[code] = avail[code] - quantity
      held[code] = held[code] + quantity
      parts[#parts + 1] = code .. '=' .. table.concat(numbers, ',')
      quantities[#quantities + 1] = code .. ':' .. quantity
    end
    local id = hold_id(qid)
    redis.call('ZADD', k.holds, until_ms, id)
    redis.call('HSET', k.holdv, id, hold_value('admission', 'admission', parts))
    redis.call('HSET', k.admw, qid, 'h|' .. table.concat(quantities, ';'))
  end

  -- Counts `counts` ({tier, hundredths}) against the stock for qid, recorded as `kind` ('w' a
  -- wish, 'a' the sale's average) so lib/demand.lua can give it back.
  function gate.count(qid, kind, counts)
    local parts = {}
    for _, c in ipairs(counts) do
      -- Zero shares are not written ('-0' is no integer to Redis when given back).
      if c[2] > 0 then
        demand[c[1]] = demand[c[1]] + c[2]
        redis.call('HINCRBY', k.admd, c[1], c[2])
        parts[#parts + 1] = c[1] .. '=' .. c[2]
      end
    end
    redis.call('HSET', k.admw, qid, kind .. '|' .. table.concat(parts, ';'))
  end

  return gate
end
