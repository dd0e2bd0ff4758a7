-- admission/reclaim.lua: admissions that give back their slot and demand (admit.lua, before it
-- admits anyone). Spliced into admit.lua only; `k` holds admit.lua's keys by name.

-- Admissions whose delivery window or token ended: out of the admitted set, their demand no
-- longer counted, the entry marked expired. At most `bound`; how many.
local function reclaim_expired(k, now, bound)
  local expired = redis.call('ZRANGEBYSCORE', k.adm, '-inf', now, 'LIMIT', 0, bound)
  for _, qid in ipairs(expired) do
    redis.call('HSET', k.gone, qid, 'expired')
    redis.call('ZREM', k.adm, qid)
    redis.call('ZREM', k.admseen, qid)
    forget_demand(k.admw, k.admd, qid)
  end
  return #expired
end

-- Delivered admissions whose page went silent for page_gone_ms give back their slot and demand;
-- the token stays valid (and a hold on admission stays until it ends), so a buyer who comes back
-- still books. At most `bound`.
local function reclaim_silent_pages(k, room, now, bound)
  local page_gone = 0
  local silent_since = now - (tonumber(room.page_gone_ms) or 30000)
  local silent = redis.call('ZRANGEBYSCORE', k.admseen, '-inf', silent_since, 'LIMIT', 0, bound)
  for _, qid in ipairs(silent) do
    redis.call('ZREM', k.admseen, qid)
    if redis.call('ZREM', k.adm, qid) == 1 then
      forget_demand(k.admw, k.admd, qid)
      page_gone = page_gone + 1
    end
  end
  if page_gone > 0 then
    redis.call('HINCRBY', k.stats, 'page_gone_total', page_gone)
  end
end

-- Delivered admissions delivered by `through` (admdlv, read on from where the last step stopped:
-- stats field `since_field`) move on to state `to` (lib/demand.lua): fresh ones to stale ('~'),
-- stale ones to counted nowhere ('!'). At most `bound`; how many moved.
local function demote_delivered(k, since_field, through, to, bound)
  local since = tonumber(redis.call('HGET', k.stats, since_field)) or 0
  if through <= since then
    return 0
  end
  local unbooked = redis.call('ZRANGEBYSCORE', k.admdlv, '(' .. since, through, 'WITHSCORES',
    'LIMIT', 0, bound)
  local from = to == '~' and '' or '~'
  local moved = 0
  for i = 1, #unbooked, 2 do
    local record = redis.call('HGET', k.admw, unbooked[i])
    -- (A held wish counts nothing: restate_demand leaves it be.)
    if record and demand_state(record) == from
        and restate_demand(k.admw, k.admd, unbooked[i], to) then
      moved = moved + 1
    end
  end
  if #unbooked == 2 * bound then
    -- Stopped at the bound: the next step goes on from the last one read (read again, it has
    -- moved already and stays so).
    through = tonumber(unbooked[#unbooked]) - 1
  end
  redis.call('HSET', k.stats, since_field, through)
  return moved
end

-- Admissions whose demand is no longer fresh (lib/demand.lua) count as stale from now on.
-- Undelivered (admfresh, by when their state next changes): fresh ones past their page's due
-- time go stale, and stale ones past any live page's poll (`dead_after_ms` more) count nowhere.
-- Delivered longer ago than this sale's buyers take to book (admdlv): stale, and after as long
-- again, counted nowhere. At most `bound` of each. Deliveries older than the token's
-- time, which no booking can follow, are forgotten.
local function demote_stale(k, room, now, bound, default_fresh_ms, dead_after_ms)
  local undelivered = 0
  local due = redis.call('ZRANGEBYSCORE', k.admfresh, '-inf', now, 'LIMIT', 0, bound)
  for _, qid in ipairs(due) do
    local record = redis.call('HGET', k.admw, qid)
    if record and demand_state(record) == '' and restate_demand(k.admw, k.admd, qid, '^') then
      undelivered = undelivered + 1
      redis.call('ZADD', k.admfresh, now + dead_after_ms, qid)
    else
      restate_demand(k.admw, k.admd, qid, '!')
      redis.call('ZREM', k.admfresh, qid)
    end
  end
  if undelivered > 0 then
    note_stale(k.stats, now, '^', undelivered, 0)
  end
  local longest = (tonumber(room.token_ttl_s) or 300) * 1000
  local window = fresh_after_delivery(k.stats, default_fresh_ms, longest)
  -- Stale once the sale's buyers have booked by then, and counted nowhere after as long again:
  -- the few who book that late leave the stale pool at once, the absent stay in it until their
  -- page's silence is out (30 s), so the pool is nearly all absent while the share that came back
  -- is not (one booking in twenty is beyond the window, as many as the absent in a rehearsal).
  local delivered = demote_delivered(k, 'dlv_through', now - window, '~', bound)
  demote_delivered(k, 'dlv_dead_through', now - 2 * window, '!', bound)
  redis.call('HSET', k.stats, 'fresh_delivered_ms', window)
  redis.call('ZREMRANGEBYSCORE', k.admdlv, '-inf', '(' .. (now - longest))
  if delivered > 0 then
    note_stale(k.stats, now, '~', delivered, 0)
  end
end
