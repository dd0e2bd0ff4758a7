-- switch_inventory.lua: make an event's inventory, rebuilt from Postgres and staged in chunks,
-- the live one, in one O(1) step per tier. A half-staged inventory is never live, and no call
-- touches more than a bounded number of elements: the free numbers were added by bounded SADDs
-- into staging keys named by the new epoch; here they are renamed into place.
-- The caller holds the event's exclusive advisory lock in Postgres and has set its new epoch
-- (from a sequence, never reused), so no booking made under an older epoch can still commit.
--
-- KEYS[1]  ev:{E}:inv
-- KEYS[2]  ev:{E}:holds
-- KEYS[3]  ev:{E}:holdv
-- KEYS[4]  ev:{E}:used
-- KEYS[3+2i]  ev:{E}:free:<tier i>                 the live free numbers of tier i
-- KEYS[4+2i]  ev:{E}:stage:<epoch>:free:<tier i>   the staged ones
-- ARGV[1]  new epoch
-- ARGV[2..] groups of five per tier: code, capacity, next (highest number issued), issued count,
--           free count (how many numbers the staged set must hold)
--
-- Returns the number of tiers switched, or {err} when a staged set is not complete (it expired,
-- or a load failed): then nothing changed.

local tiers = (#ARGV - 1) / 5
for i = 1, tiers do
  local want = tonumber(ARGV[2 + 5 * (i - 1) + 4])
  if redis.call('SCARD', KEYS[4 + 2 * i]) ~= want then
    return redis.error_reply('staged inventory incomplete for tier ' .. ARGV[2 + 5 * (i - 1)])
  end
end

-- UNLINK frees large sets in the background instead of blocking here.
redis.call('UNLINK', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
local fields = {'epoch', ARGV[1]}
local left = 0
for i = 1, tiers do
  local g = 2 + 5 * (i - 1)
  local code = ARGV[g]
  local avail = tonumber(ARGV[g + 1]) - tonumber(ARGV[g + 3])
  left = left + avail
  redis.call('UNLINK', KEYS[3 + 2 * i])
  if tonumber(ARGV[g + 4]) > 0 then
    redis.call('RENAME', KEYS[4 + 2 * i], KEYS[3 + 2 * i])
    redis.call('PERSIST', KEYS[3 + 2 * i])
  end
  fields[#fields + 1] = code .. ':cap'
  fields[#fields + 1] = ARGV[g + 1]
  fields[#fields + 1] = code .. ':next'
  fields[#fields + 1] = ARGV[g + 2]
  fields[#fields + 1] = code .. ':avail'
  fields[#fields + 1] = tostring(avail)
end
fields[#fields + 1] = 'soldout'
fields[#fields + 1] = (left == 0) and '1' or '0'
redis.call('HSET', KEYS[1], unpack(fields))
return tiers
