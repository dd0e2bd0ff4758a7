-- adapt_rate.lua: adaptive admission's one step a second for one event (the first worker to ask
-- in a second takes it; the others read its result). Increase gently, cut quickly: a verdict
-- over a target cuts the effective rate to 70 %, never below the floor; one within the targets
-- raises it by 5 % of the set rate, never above it (the set rate stays the ceiling).
--
-- KEYS[1] ev:{E}:cfg   effective_per_minute, adaptive_reason, adapted_s (read by admit.lua and
--                      the admin view)
-- ARGV[1] the set rate (admission_per_minute)
-- ARGV[2] the floor (per minute)
-- ARGV[3] the verdict: booking_p95_above_target, too_many_503s, within_targets or
--         nothing_measured (held as it is)
--
-- Returns the effective rate now.

local now_s = math.floor(clock_ms() / 1000)
local state = redis.call('HMGET', KEYS[1], 'effective_per_minute', 'adapted_s')
local set, floor = tonumber(ARGV[1]), tonumber(ARGV[2])
local current = math.min(tonumber(state[1]) or set, set)
-- Redis answers with strings: compared with the number as it is, no second ever matched, and two
-- workers each took a step (two cuts a second).
if tonumber(state[2]) == now_s then
  return current
end
local reason = ARGV[3]
if reason == 'booking_p95_above_target' or reason == 'too_many_503s' then
  current = math.max(floor, math.floor(current * 0.7))
elseif reason == 'within_targets' then
  current = math.min(set, current + math.max(1, math.ceil(set * 0.05)))
  if current >= set then
    reason = 'at_set_rate'
  end
end
redis.call('HSET', KEYS[1], 'effective_per_minute', current, 'adaptive_reason', reason,
  'adapted_s', now_s)
return current
