-- lib/holds.lua: a hold's value, what it holds and how it ends, shared by the scripts that make,
-- claim or end one (reserve.lua, admit.lua, release.lua, confirm.lua).
-- Spliced before every script when it is loaded (`ticketing::lua_script!`): it defines
-- functions only, and reads no KEYS or ARGV of its own.

-- A hold's value in the holds hash: "<fingerprint>|<attempt>|VIP=1,2;GA=7", the request's
-- fingerprint, the attempt that holds it now, and the numbers per tier (`parts`, "VIP=1,2").
local function hold_value(fingerprint, attempt, parts)
  return fingerprint .. '|' .. attempt .. '|' .. table.concat(parts, ';')
end

-- The fingerprint, the attempt and the numbers ("VIP=1,2;GA=7") of a hold's value.
local function read_hold(value)
  return string.match(value, '^([^|]*)|([^|]*)|(.*)$')
end

-- How many numbers each tier of a hold's numbers ("VIP=1,2;GA=7") holds: {code, count} pairs in
-- the value's order.
local function hold_counts(numbers)
  local counts = {}
  for part in string.gmatch(numbers, '[^;]+') do
    local code, list = string.match(part, '^(.-)=(.*)$')
    local count = 0
    for _ in string.gmatch(list, '%d+') do
      count = count + 1
    end
    counts[#counts + 1] = {code, count}
  end
  return counts
end

-- The id of the hold an admitted buyer's wish is held under: its queue id (16 raw bytes) in
-- the form reservation ids have (a token jti: hyphenated hex).
local function hold_id(qid)
  local hex = string.gsub(qid, '.', function(c)
    return string.format('%02x', string.byte(c))
  end)
  return string.sub(hex, 1, 8) .. '-' .. string.sub(hex, 9, 12) .. '-' .. string.sub(hex, 13, 16)
    .. '-' .. string.sub(hex, 17, 20) .. '-' .. string.sub(hex, 21, 32)
end

-- Ends the numbers of a hold ("VIP=1,2;GA=7") in the inventory hash `inv`: no longer counted as
-- held; with `free` (tier code -> its free-numbers set) they go back on sale, without it they
-- are dropped (they may be sold already).
local function end_hold(inv, numbers, free)
  for part in string.gmatch(numbers, '[^;]+') do
    local code, list = string.match(part, '^(.-)=(.*)$')
    local count, back = 0, 0
    for n in string.gmatch(list, '%d+') do
      count = count + 1
      if free then
        back = back + redis.call('SADD', free[code], n)
      end
    end
    redis.call('HINCRBY', inv, code .. ':held', -count)
    if back > 0 then
      redis.call('HINCRBY', inv, code .. ':avail', back)
      redis.call('HSET', inv, 'soldout', '0')
    end
  end
end

-- Marks the event sold out when no tier of the inventory hash `inv` has anything left or held,
-- and tells every gateway's open streams at once on the notice channel ("s|<Redis ms>"; see
-- gateway/src/notices.rs). Held numbers may come back: until they are sold the line waits.
local function mark_if_sold_out(inv, channel)
  local fields = redis.call('HGETALL', inv)
  for i = 1, #fields, 2 do
    local field = fields[i]
    if (string.sub(field, -6) == ':avail' or string.sub(field, -5) == ':held')
        and tonumber(fields[i + 1]) > 0 then
      return
    end
  end
  if redis.call('HGET', inv, 'soldout') ~= '1' then
    redis.call('HSET', inv, 'soldout', '1')
    local t = redis.call('TIME')
    redis.call('SPUBLISH', channel,
      's|' .. (tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)))
  end
end

