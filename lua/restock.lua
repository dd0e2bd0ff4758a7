-- restock.lua: numbers of a cancelled booking go back on sale, each at most once.
--
-- KEYS[1]  ev:{E}:inv
-- KEYS[1+i] ev:{E}:free:<tier of ARGV pair i>
-- ARGV[1]  the inventory epoch the cancellation was made under
-- ARGV[2..] pairs: tier code, comma-separated numbers
--
-- Returns the count of numbers put back, or -1 when the inventory was rebuilt since (the
-- rebuild read the cancellation from Postgres already).
--
-- Callers restock a booking once, after Postgres changed it to cancelled: Redis does not track
-- sold numbers, so restocking a number that has been sold again would put it on sale twice.

if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then
  return -1
end
local back = 0
local pair = 0
for i = 2, #ARGV, 2 do
  pair = pair + 1
  local code = ARGV[i]
  local added = 0
  for n in string.gmatch(ARGV[i + 1], '%d+') do
    added = added + redis.call('SADD', KEYS[1 + pair], n)
  end
  if added > 0 then
    redis.call('HINCRBY', KEYS[1], code .. ':avail', added)
    redis.call('HSET', KEYS[1], 'soldout', '0')
  end
  back = back + added
end
return back
