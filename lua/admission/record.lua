-- admission/record.lua: what an admission step tells others (gateways, the live view, the
-- wait estimate). Spliced into admit.lua only; `k` holds admit.lua's keys by name.

-- Publishes the admitted queue ids to the event's notice channel, so gateways push the news to
-- open streams at once, and counts the step in the event's statistics and per-second
-- admissions (two minutes of them kept); `probes`: admissions the stock gate let in as probes.
local function record_step(k, channel, now, admitted_ids, dropped, parked, probes)
  local admitted = #admitted_ids
  local now_s = math.floor(now / 1000)
  if admitted > 0 then
    -- "a|<Redis ms>|" and the raw 16-byte queue ids (see gateway/src/notices.rs).
    redis.call('SPUBLISH', channel, 'a|' .. now .. '|' .. table.concat(admitted_ids))
    redis.call('HINCRBY', k.stats, 'admitted_total', admitted)
    redis.call('HSET', k.stats, 'last_admit_ms', now)
    redis.call('HINCRBY', k.admsec, now_s, admitted)
    if probes > 0 then
      redis.call('HINCRBY', k.stats, 'stock_probes_total', probes)
    end
  end
  if dropped > 0 then
    redis.call('HINCRBY', k.stats, 'dropped_total', dropped)
  end
  if parked > 0 then
    redis.call('HINCRBY', k.stats, 'parked_total', parked)
  end
  if now_s % 10 == 0 then
    for _, second in ipairs(redis.call('HKEYS', k.admsec)) do
      if tonumber(second) < now_s - 120 then
        redis.call('HDEL', k.admsec, second)
      end
    end
  end
end
