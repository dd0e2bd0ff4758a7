-- open_sale.lua: at on_sale_at, place every pre-queue entry, in the random order the caller
-- drew, ahead of everyone who joins later.
--
-- KEYS[1]  ev:{E}:cfg
-- KEYS[2]  ev:{E}:pre
-- KEYS[3]  ev:{E}:wait
-- KEYS[4]  ev:{E}:seq
-- KEYS[5]  ev:{E}:alive:0
-- KEYS[6]  ev:{E}:alive:1
-- ARGV[1]  on_sale_at, unix ms
-- ARGV[2..] every pre-queue id, shuffled
--
-- Returns the number placed, -1 when already open, -2 when the pre-queue changed since the
-- caller read it (read and shuffle again), -3 when the sale has not opened yet.

local now_t = redis.call('TIME')
local now_s = tonumber(now_t[1])
local now = now_s * 1000 + math.floor(tonumber(now_t[2]) / 1000)
if redis.call('HGET', KEYS[1], 'opened') == '1' then
  return -1
end
if now < tonumber(ARGV[1]) then
  return -3
end
local count = #ARGV - 1
if redis.call('SCARD', KEYS[2]) ~= count then
  return -2
end

local window_s = tonumber(redis.call('HGET', KEYS[1], 'alive_window_s')) or 60
local w = math.floor(now_s / window_s)
local parity = w % 2
if redis.call('HGET', KEYS[1], 'aw' .. parity) ~= tostring(w) then
  redis.call('DEL', KEYS[5 + parity])
  redis.call('HSET', KEYS[1], 'aw' .. parity, w)
end
-- Places continue from the counter, so nobody who joined since is ever ahead of the pre-queue.
local base = tonumber(redis.call('GET', KEYS[4])) or 0
for i = 1, count do
  redis.call('ZADD', KEYS[3], base + i, ARGV[1 + i])
  redis.call('SETBIT', KEYS[5 + parity], base + i, 1)
end
redis.call('SET', KEYS[4], base + count)
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[1], 'opened', '1')
return count
