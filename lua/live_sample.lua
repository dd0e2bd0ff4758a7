-- live_sample.lua: one sample per second of an event's sale, for the operator's live view.
--
-- KEYS[1]  ev:{E}:live    stream of samples, one per second, its id the second (`<ms>-0`)
-- KEYS[2]  ev:{E}:cfg     admission_per_minute, paused, enabled, on_sale_ms
-- KEYS[3]  ev:{E}:wait    the line
-- KEYS[4]  ev:{E}:adm     admitted buyers by the end of their slot
-- KEYS[5]  ev:{E}:stats   admitted_total, booked_total, given_back_total (admitted buyers
--                         refused for stock: each gives back its slot once), buyers:<code>
-- KEYS[6]  ev:{E}:inv     per tier <code>:cap, :avail, :held
-- ARGV[1]  the booking services' p95 (µs) published in the last seconds, or ''
-- ARGV[2]  most samples kept (30 minutes)
-- ARGV[2+i] tier i's code
--
-- The id is this second by Redis's clock: several workers sampling the same event write one
-- sample per second between them (a second that has one already is skipped), and every gateway
-- serves the same history. Returns the id written, or false when skipped.
--
-- A stalled second: the room open, on sale and not paused, stock on sale in some tier, people
-- waiting, and nobody admitted since the last sample. `stall_s` is the stall running now (0 when
-- the last sample admitted someone), `stalled_s` every stalled second of the sale.

local now = clock_ms()
local now_s = math.floor(now / 1000)
local second = now_s * 1000
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)[1]
if last and tonumber(string.match(last[1], '^(%d+)')) >= second then
  return false
end
local room = read_fields(KEYS[2], {'admission_per_minute', 'paused', 'enabled', 'on_sale_ms'})
local stats = read_fields(KEYS[5], {'admitted_total', 'booked_total', 'given_back_total'})
local admitted = tonumber(stats.admitted_total) or 0
local waiting = redis.call('ZCARD', KEYS[3])
local fields = {
  't', now,
  'waiting', waiting,
  'active', redis.call('ZCOUNT', KEYS[4], '(' .. now, '+inf'),
  'admitted', admitted,
  'booked', tonumber(stats.booked_total) or 0,
  'refused', tonumber(stats.given_back_total) or 0,
  'rate', tonumber(room.admission_per_minute) or 0,
  'paused', room.paused == '1' and 1 or 0,
  'enabled', room.enabled == '1' and 1 or 0,
  'p95_us', ARGV[1],
}
local on_sale = false
for i = 3, #ARGV do
  local code = ARGV[i]
  local stock = redis.call('HMGET', KEYS[6], code .. ':cap', code .. ':avail', code .. ':held')
  local cap, avail, held = tonumber(stock[1]) or 0, tonumber(stock[2]) or 0, tonumber(stock[3]) or 0
  local buyers = tonumber(redis.call('HGET', KEYS[5], 'buyers:' .. code)) or 0
  on_sale = on_sale or avail > 0
  -- "available,held,sold,buyers": sold is what neither is on sale nor held (issued tickets),
  -- buyers the bookings that took this tier.
  fields[#fields + 1] = 'tier:' .. code
  fields[#fields + 1] = avail .. ',' .. held .. ',' .. math.max(0, cap - avail - held) .. ','
    .. buyers
end

local stall_s, stalled_s = 0, 0
if last then
  local before = {}
  for i = 1, #last[2], 2 do
    before[last[2][i]] = last[2][i + 1]
  end
  stalled_s = tonumber(before.stalled_s) or 0
  local open = room.enabled == '1' and room.paused ~= '1'
    and now >= (tonumber(room.on_sale_ms) or 0)
  if open and on_sale and waiting > 0 and admitted == (tonumber(before.admitted) or 0) then
    local elapsed_s = math.floor((second - tonumber(string.match(last[1], '^(%d+)'))) / 1000)
    stall_s = (tonumber(before.stall_s) or 0) + elapsed_s
    stalled_s = stalled_s + elapsed_s
  end
end
fields[#fields + 1] = 'stall_s'
fields[#fields + 1] = stall_s
fields[#fields + 1] = 'stalled_s'
fields[#fields + 1] = stalled_s
local id = second .. '-0'
redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[2], id, unpack(fields))
return id
