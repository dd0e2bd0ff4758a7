-- queue_entry.lua: join the waiting room, or poll one's place in it.
--
-- KEYS[1]  ev:{E}:cfg      settings (enabled, admission_per_minute, paused, token_ttl_s,
--                          alive_window_s, opened) and liveness windows (aw0, aw1)
-- KEYS[2]  ev:{E}:wait     zset queue id -> place
-- KEYS[3]  ev:{E}:pre      set of queue ids that joined before the opening
-- KEYS[4]  ev:{E}:seq      place counter
-- KEYS[5]  ev:{E}:alive:0  liveness bitmap, even windows
-- KEYS[6]  ev:{E}:alive:1  liveness bitmap, odd windows
-- KEYS[7]  ev:{E}:adm      zset admitted queue id -> token expiry (ms)
-- KEYS[8]  ev:{E}:gone     hash queue id -> why it left
-- KEYS[9]  ev:{E}:tok:<queue id>  the signed entry token, if any
-- KEYS[10] ev:{E}:inv      inventory (its `soldout` flag)
-- KEYS[11] ev:{E}:stats
-- KEYS[12] ev:{E}:admsec
-- ARGV[1]  "join" or "poll"
-- ARGV[2]  queue id (raw 16 bytes)
--
-- Returns {state, position, expires_ms, token} where state is one of pre_queue, waiting,
-- admitted, expired, sold_out, not_found, no_config. `position` is 1-based (0 when not waiting);
-- `token` is false when the admitted entry has no signed token yet.
--
-- A waiting entry is looked up first: in a hot sale nearly every call is a waiting poll, and this
-- keeps it to a handful of commands. (An entry with a live token is never waiting: a join
-- answers `admitted` before it would queue again.)

local now_t = redis.call('TIME')
local now_s = tonumber(now_t[1])
local now = now_s * 1000 + math.floor(tonumber(now_t[2]) / 1000)
local cfg = redis.call('HMGET', KEYS[1], 'enabled', 'token_ttl_s', 'opened', 'alive_window_s')
if not cfg[1] then
  return {'no_config', 0, 0, false}
end
local qid = ARGV[2]

local function mark_alive(place)
  local window_s = tonumber(cfg[4]) or 60
  local w = math.floor(now_s / window_s)
  local parity = w % 2
  local field = 'aw' .. parity
  if redis.call('HGET', KEYS[1], field) ~= tostring(w) then
    redis.call('DEL', KEYS[5 + parity])
    redis.call('HSET', KEYS[1], field, w)
  end
  redis.call('SETBIT', KEYS[5 + parity], place, 1)
end

local soldout = redis.call('HGET', KEYS[10], 'soldout') == '1'
local place = redis.call('ZSCORE', KEYS[2], qid)
if place then
  mark_alive(tonumber(place))
  if soldout then
    return {'sold_out', 0, 0, false}
  end
  return {'waiting', redis.call('ZRANK', KEYS[2], qid) + 1, 0, false}
end

local token = redis.call('GET', KEYS[9])
local expires = redis.call('ZSCORE', KEYS[7], qid)
if token then
  local pttl = redis.call('PTTL', KEYS[9])
  return {'admitted', 0, now + pttl, token}
end
if expires and tonumber(expires) > now then
  return {'admitted', 0, tonumber(expires), false}
end

if redis.call('SISMEMBER', KEYS[3], qid) == 1 then
  return {soldout and 'sold_out' or 'pre_queue', 0, 0, false}
end
if soldout then
  return {'sold_out', 0, 0, false}
end

if ARGV[1] == 'poll' then
  if expires or redis.call('HEXISTS', KEYS[8], qid) == 1 then
    return {'expired', 0, 0, false}
  end
  return {'not_found', 0, 0, false}
end

-- A join: a returning visitor whose place expired starts again at the back.
redis.call('HDEL', KEYS[8], qid)
if cfg[1] ~= '1' then
  local until_ms = now + tonumber(cfg[2]) * 1000
  redis.call('ZADD', KEYS[7], until_ms, qid)
  redis.call('HINCRBY', KEYS[11], 'admitted_total', 1)
  redis.call('HINCRBY', KEYS[12], now_s, 1)
  return {'admitted', 0, until_ms, false}
end
if cfg[3] ~= '1' then
  redis.call('SADD', KEYS[3], qid)
  return {'pre_queue', 0, 0, false}
end
local seq = redis.call('INCR', KEYS[4])
redis.call('ZADD', KEYS[2], seq, qid)
mark_alive(seq)
return {'waiting', redis.call('ZRANK', KEYS[2], qid) + 1, 0, false}
