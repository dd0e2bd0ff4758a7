-- lib/demand.lua: what an admitted buyer counts against the stock (admit.lua's stock gate), and
-- how it stops counting. Spliced before every script when it is loaded (`lua_script!`): it
-- defines functions only, and reads no KEYS or ARGV of its own.
--
-- `admw` holds each admitted buyer's record: "w|GA=200;VIP=100" (a wish) or "a|GA=20;..." (no
-- wish: the sale's average), in hundredths of tickets, which `admd` sums per tier. A buyer
-- admitted with its wish held ("h|GA:2") counts nothing: its tickets are out of the stock
-- already, held under its queue id.

-- Stops counting `qid`'s demand; true if it had a record.
local function forget_demand(admw, admd, qid)
  local demand = redis.call('HGET', admw, qid)
  if not demand then
    return false
  end
  if string.sub(demand, 1, 2) ~= 'h|' then
    for code, hundredths in string.gmatch(demand, '([^|=;]+)=(%d+)') do
      redis.call('HINCRBY', admd, code, 0 - tonumber(hundredths))
    end
  end
  redis.call('HDEL', admw, qid)
  return true
end
