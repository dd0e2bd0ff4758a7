-- lib/liveness.lua: whether a waiting entry showed a sign of life lately. Each event keeps two
-- bitmaps (ev:{E}:alive:0 and :1, one bit per arrival number), one per liveness window by the
-- window's parity; the room's settings say which window each holds now (aw0, aw1). A join, a
-- poll or a stream check marks the entry's bit in the current window (queue_entry.lua).

-- Arrival numbers per event (2^28): a place's low part.
local ARRIVALS = 268435456

-- Whether the entry at `place` was marked in window `w` or the one before, reading only a bitmap
-- that holds the window asked for. `room` holds aw0 and aw1; `bitmaps` the two keys, by parity
-- (bitmaps[1] for 0, bitmaps[2] for 1).
local function seen_lately(room, w, bitmaps, place)
  local arrival = tonumber(place) % ARRIVALS
  for back = 0, 1 do
    local win = w - back
    local parity = win % 2
    if room['aw' .. parity] == tostring(win)
        and redis.call('GETBIT', bitmaps[parity + 1], arrival) == 1 then
      return true
    end
  end
  return false
end
