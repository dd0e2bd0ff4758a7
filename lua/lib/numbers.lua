-- lib/numbers.lua: taking ticket numbers out of a tier's stock (reserve.lua for a token,
-- admit.lua for an admitted buyer's wish).
--
-- Per tier, in the inventory hash: `<code>:next` the highest number ever handed out,
-- `<code>:avail` what is on sale, `<code>:held` what holds have; the tier's free-numbers set
-- holds numbers handed out and given back. Invariant: avail = cap - next + |free|.

-- Takes `count` numbers of tier `code` from on sale into held: given-back numbers first, then
-- fresh ones. The caller has checked that `count` are available. Returns them as strings.
local function take_numbers(inv, free, code, count)
  -- A Lua number handed to redis.call is formatted with printf's %.17g, about half a
  -- microsecond each on this project's machine, a fifth of a reserve's own time in all: the
  -- count is formatted once, and its text serves the pop and the increments.
  local text = tostring(count)
  local numbers = redis.call('SPOP', free, text)
  local fresh = count - #numbers
  if fresh > 0 then
    local step = fresh == count and text or tostring(fresh)
    local last = redis.call('HINCRBY', inv, code .. ':next', step)
    for n = last - fresh + 1, last do
      numbers[#numbers + 1] = tostring(n)
    end
  end
  redis.call('HINCRBY', inv, code .. ':avail', '-' .. text)
  redis.call('HINCRBY', inv, code .. ':held', text)
  return numbers
end
