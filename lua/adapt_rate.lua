-- adapt_rate.lua: adaptive admission's one step a second for one event (the first worker to ask
-- in a second takes it; the others read its result). Increase gently, cut quickly, and give a
-- cut time to show:
--   * a verdict over a target cuts the effective rate to ARGV[4] (70 %; down to half when the
--     p95 is twice the target or more, in proportion), never below the floor, and at
--     most once in CUT_EVERY_S: buyers admitted before the cut still book in the seconds after
--     it, and cutting again for them (every second, as before) took the rate to the floor
--     while the bookings were already within the target (BENCHMARKS.md, the slowed backend);
--   * a verdict within them raises it by ARGV[5] of the set rate a second (5 % while the
--     slower of the 3 s and the 10 s p95 is at most half the target, 1 % up to 80 % of it,
--     nothing closer), never
--     above the set rate (the ceiling): fast where bookings are fine, slowly near the edge,
--     which a climb at one pace meets by surprise and overshoots by the seconds a verdict lags.
--
-- KEYS[1] ev:{E}:cfg   effective_per_minute, adaptive_reason, adapted_s, cut_s (read by
--                      admit.lua and the admin view)
-- ARGV[1] the set rate (admission_per_minute)
-- ARGV[2] the floor (per minute)
-- ARGV[3] the verdict: booking_p95_above_target, too_many_503s, within_targets,
--         writers_near_full or nothing_measured (the last two held as it is)
-- ARGV[4] a cut keeps this share of the rate (permille)
-- ARGV[5] a climb adds this share of the set rate (permille)
--
-- Returns the effective rate now.

local CUT_EVERY_S = 3

local now_s = math.floor(clock_ms() / 1000)
local state = redis.call('HMGET', KEYS[1], 'effective_per_minute', 'adapted_s', 'cut_s')
local set, floor = tonumber(ARGV[1]), tonumber(ARGV[2])
local current = math.min(tonumber(state[1]) or set, set)
-- Redis answers with strings: compared with the number as it is, no second ever matched, and two
-- workers each took a step (two cuts a second).
if tonumber(state[2]) == now_s then
  return current
end
local reason = ARGV[3]
local fields = {'adapted_s', now_s}
if reason == 'booking_p95_above_target' or reason == 'too_many_503s' then
  local cut_s = tonumber(state[3])
  if not cut_s or now_s - cut_s >= CUT_EVERY_S then
    fields[#fields + 1], fields[#fields + 2] = 'cut_s', now_s
    current = math.max(floor, math.floor(current * tonumber(ARGV[4]) / 1000))
  end
elseif reason == 'within_targets' then
  current = math.min(set, current + math.ceil(set * tonumber(ARGV[5]) / 1000))
  if current >= set then
    reason = 'at_set_rate'
  end
end
fields[#fields + 1], fields[#fields + 2] = 'effective_per_minute', current
fields[#fields + 1], fields[#fields + 2] = 'adaptive_reason', reason
redis.call('HSET', KEYS[1], unpack(fields))
return current
