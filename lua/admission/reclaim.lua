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
