-- inventory_snapshot.lua: one consistent read of an event's inventory and open holds.
--
-- KEYS[1]  ev:{E}:inv
-- KEYS[2]  ev:{E}:holdv
--
-- Returns {inventory hash as a flat list, holds hash as a flat list}.

return {redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2])}
