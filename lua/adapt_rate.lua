-- adapt_rate.lua: adaptive admission's one step a second for one event (the first worker to ask
-- in a second takes it; the others read its result). Increase gently, cut quickly, and give a
-- cut time to show:
--   * a verdict over a target cuts the effective rate to ARGV[4] (70 %; down to half when the
--     p95 is twice the target or more, in proportion), never below the floor, and at
--     most once in CUT_EVERY_S: buyers admitted before the cut still book in the seconds after
--     it, and cutting again for them (every second, as before) took the rate to the floor
--     while the bookings were already within the target (BENCHMARKS.md, the slowed backend);
--   * a verdict within them raises it by 5 % of the set rate a second, but by 1 % between 85 %
--     of the rate the last cut came from (where bookings last broke the target) and that rate,
--     never above the set rate (the ceiling). So it comes back fast to the neighbourhood it
--     knows is safe, probes the edge slowly instead of overshooting it by the seconds a verdict
--     lags, and once past the edge unharmed (the backend recovered) climbs fast again.
--
-- KEYS[1] ev:{E}:cfg   effective_per_minute, adaptive_reason, adapted_s, cut_s, broke_at (read
--                      by admit.lua and the admin view)
-- ARGV[1] the set rate (admission_per_minute)
-- ARGV[2] the floor (per minute)
-- ARGV[3] the verdict: booking_p95_above_target, too_many_503s, within_targets or
--         nothing_measured (held as it is)
-- ARGV[4] a cut keeps this share of the rate (permille)
--
-- Returns the effective rate now.

local CUT_EVERY_S = 3

local now_s = math.floor(clock_ms() / 1000)
local state = redis.call('HMGET', KEYS[1], 'effective_per_minute', 'adapted_s', 'cut_s',
  'broke_at')
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
    fields[#fields + 1], fields[#fields + 2] = 'broke_at', current
    fields[#fields + 1], fields[#fields + 2] = 'cut_s', now_s
    current = math.max(floor, math.floor(current * tonumber(ARGV[4]) / 1000))
  end
elseif reason == 'within_targets' then
  local broke_at = tonumber(state[4]) or set
  local near_edge = current >= 0.85 * broke_at and current < broke_at
  local step = near_edge and 0.01 or 0.05
  current = math.min(set, current + math.max(1, math.ceil(set * step)))
  if current >= set then
    reason = 'at_set_rate'
  end
end
fields[#fields + 1], fields[#fields + 2] = 'effective_per_minute', current
fields[#fields + 1], fields[#fields + 2] = 'adaptive_reason', reason
redis.call('HSET', KEYS[1], unpack(fields))
return current
