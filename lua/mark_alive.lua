-- mark_alive.lua: signs of life for entries whose polls a gateway refused (rate limits) but
-- whose place receipts it verified: a refused poll still comes from a live page, and must never
-- make its entry look abandoned. Batched by the gateway, at most a few hundred per call.
--
-- KEYS[1]  ev:{E}:cfg      (alive_window_s and the liveness windows aw0, aw1)
-- KEYS[2]  ev:{E}:alive:0
-- KEYS[3]  ev:{E}:alive:1
-- ARGV     arrival numbers (the low 28 bits of each entry's place)
--
-- The same window rule as queue_entry.lua's mark_alive. Returns how many were marked (0 when
-- the event has no settings in Redis).

local window_s = tonumber(redis.call('HGET', KEYS[1], 'alive_window_s'))
if not window_s then
  return 0
end
local now_s = math.floor(clock_ms() / 1000)
local w = math.floor(now_s / window_s)
local parity = w % 2
local field = 'aw' .. parity
if redis.call('HGET', KEYS[1], field) ~= tostring(w) then
  redis.call('DEL', KEYS[2 + parity])
  redis.call('HSET', KEYS[1], field, w)
end
for i = 1, #ARGV do
  redis.call('SETBIT', KEYS[2 + parity], tonumber(ARGV[i]), 1)
end
return #ARGV
