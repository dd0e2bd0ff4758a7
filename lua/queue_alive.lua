-- queue_alive.lua: the booking page of an admitted entry is still open (its heartbeat,
-- POST /api/queue/{queue_id}/alive). A page silent for page_gone_ms gives back its slot and
-- demand (admit.lua); this keeps them.
--
-- KEYS[1] ev:{E}:adm      admitted queue id -> end of its slot
-- KEYS[2] ev:{E}:admseen  admitted queue id -> its page's last sign of life (ms)
-- ARGV[1] queue id (raw 16 bytes)
--
-- Returns 1, or 0 when the entry holds no admission slot.

if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[2], clock_ms(), ARGV[1])
return 1
