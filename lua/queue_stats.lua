-- queue_stats.lua: the live numbers of one waiting room.
--
-- KEYS[1]  ev:{E}:wait
-- KEYS[2]  ev:{E}:pre
-- KEYS[3]  ev:{E}:adm
-- KEYS[4]  ev:{E}:stats
-- KEYS[5]  ev:{E}:admsec
--
-- Returns {waiting, admitted_total, active, booked_total, admitted_last_minute}.

local now_t = redis.call('TIME')
local now_s = tonumber(now_t[1])
local now = now_s * 1000 + math.floor(tonumber(now_t[2]) / 1000)
local stats = redis.call('HMGET', KEYS[4], 'admitted_total', 'booked_total')
local last_minute = 0
local per_second = redis.call('HGETALL', KEYS[5])
for i = 1, #per_second, 2 do
  if tonumber(per_second[i]) > now_s - 60 then
    last_minute = last_minute + tonumber(per_second[i + 1])
  end
end
return {
  redis.call('ZCARD', KEYS[1]) + redis.call('SCARD', KEYS[2]),
  tonumber(stats[1]) or 0,
  redis.call('ZCOUNT', KEYS[3], '(' .. now, '+inf'),
  tonumber(stats[2]) or 0,
  last_minute,
}
