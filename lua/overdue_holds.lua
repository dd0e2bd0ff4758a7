-- overdue_holds.lua: reservations whose hold deadline passed, by Redis's clock (the clock the
-- deadlines were set by, see reserve.lua), a bounded page at a time, with the inventory's epoch
-- and whether each is an admission hold (hold on admission, admit.lua: never written to
-- Postgres, so the sweeper needs no lookup for it).
--
-- KEYS[1]  ev:{E}:holds
-- KEYS[2]  ev:{E}:holdv
-- KEYS[3]  ev:{E}:inv
-- ARGV[1]  most ids to return
--
-- Returns {epoch or false, id1, kind1, id2, kind2, ...}, kind "admission" or "token".

local now_ms = clock_ms()
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms, 'LIMIT', 0, tonumber(ARGV[1]))
local out = {redis.call('HGET', KEYS[3], 'epoch')}
for _, id in ipairs(ids) do
  local held = redis.call('HGET', KEYS[2], id)
  out[#out + 1] = id
  if held and string.sub(held, 1, 10) == 'admission|' then
    out[#out + 1] = 'admission'
  else
    out[#out + 1] = 'token'
  end
end
return out
