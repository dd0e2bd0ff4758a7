-- live_sample.lua: one sample per second of an event's sale, for the operator's live view.
--
-- KEYS[1]  ev:{E}:live    stream of samples, one per second, its id the second (`<ms>-0`)
-- KEYS[2]  ev:{E}:cfg     admission_per_minute, paused, enabled
-- KEYS[3]  ev:{E}:wait    the line
-- KEYS[4]  ev:{E}:adm     admitted buyers by the end of their slot
-- KEYS[5]  ev:{E}:stats   admitted_total, booked_total
-- KEYS[6]  ev:{E}:inv     per tier <code>:cap, :avail, :held
-- ARGV[1]  the booking services' p95 (µs) published in the last seconds, or ''
-- ARGV[2]  most samples kept (30 minutes)
-- ARGV[2+i] tier i's code
--
-- The id is this second by Redis's clock: several workers sampling the same event write one
-- sample per second between them (a second that has one already is skipped), and every gateway
-- serves the same history. Returns the id written, or false when skipped.

local now = clock_ms()
local now_s = math.floor(now / 1000)
local second = now_s * 1000
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)[1]
if last and tonumber(string.match(last[1], '^(%d+)')) >= second then
  return false
end
local room = read_fields(KEYS[2], {'admission_per_minute', 'paused', 'enabled'})
local stats = redis.call('HMGET', KEYS[5], 'admitted_total', 'booked_total')
local fields = {
  't', now,
  'waiting', redis.call('ZCARD', KEYS[3]),
  'active', redis.call('ZCOUNT', KEYS[4], '(' .. now, '+inf'),
  'admitted', tonumber(stats[1]) or 0,
  'booked', tonumber(stats[2]) or 0,
  'rate', tonumber(room.admission_per_minute) or 0,
  'paused', room.paused == '1' and 1 or 0,
  'enabled', room.enabled == '1' and 1 or 0,
  'p95_us', ARGV[1],
}
for i = 3, #ARGV do
  local code = ARGV[i]
  local stock = redis.call('HMGET', KEYS[6], code .. ':cap', code .. ':avail', code .. ':held')
  local cap, avail, held = tonumber(stock[1]) or 0, tonumber(stock[2]) or 0, tonumber(stock[3]) or 0
  -- "available,held,sold": sold is what neither is on sale nor held (issued tickets).
  fields[#fields + 1] = 'tier:' .. code
  fields[#fields + 1] = avail .. ',' .. held .. ',' .. math.max(0, cap - avail - held)
end
local id = second .. '-0'
redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[2], id, unpack(fields))
return id
