-- load_inventory.lua: replace an event's inventory with the state rebuilt from Postgres.
-- The caller holds the event's exclusive advisory lock in Postgres and has bumped its epoch, so
-- no booking made under an older epoch can still commit.
--
-- KEYS[1]  ev:{E}:inv
-- KEYS[2]  ev:{E}:holds
-- KEYS[3]  ev:{E}:holdv
-- KEYS[4]  ev:{E}:used
-- KEYS[4+i] ev:{E}:free:<tier i>
-- ARGV[1]  new epoch
-- ARGV[2..] groups of five per tier: code, capacity, next (highest number issued), issued count,
--           comma-separated free numbers below next
--
-- Returns the number of tiers loaded.

for i = 1, #KEYS do
  redis.call('DEL', KEYS[i])
end
local fields = {'epoch', ARGV[1]}
local left = 0
local tier = 0
for i = 2, #ARGV, 5 do
  tier = tier + 1
  local code = ARGV[i]
  local avail = tonumber(ARGV[i + 1]) - tonumber(ARGV[i + 3])
  left = left + avail
  fields[#fields + 1] = code .. ':cap'
  fields[#fields + 1] = ARGV[i + 1]
  fields[#fields + 1] = code .. ':next'
  fields[#fields + 1] = ARGV[i + 2]
  fields[#fields + 1] = code .. ':avail'
  fields[#fields + 1] = tostring(avail)
  local batch = {}
  for n in string.gmatch(ARGV[i + 4], '%d+') do
    batch[#batch + 1] = n
    if #batch == 1000 then
      redis.call('SADD', KEYS[4 + tier], unpack(batch))
      batch = {}
    end
  end
  if #batch > 0 then
    redis.call('SADD', KEYS[4 + tier], unpack(batch))
  end
end
fields[#fields + 1] = 'soldout'
fields[#fields + 1] = (left == 0) and '1' or '0'
redis.call('HSET', KEYS[1], unpack(fields))
return tier
