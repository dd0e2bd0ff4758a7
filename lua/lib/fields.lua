-- lib/fields.lua: reading a hash's fields by name (the room's settings, the line's marks), not
-- by their position in an HMGET, so adding a field cannot shift another's meaning.

-- The fields `names` of hash `key`, as a table by name (an absent field is false).
local function read_fields(key, names)
  local values = redis.call('HMGET', key, unpack(names))
  local fields = {}
  for i, name in ipairs(names) do
    fields[name] = values[i]
  end
  return fields
end

-- Every field of hash `key`, as a table by name.
local function read_hash(key)
  local flat = redis.call('HGETALL', key)
  local fields = {}
  for i = 1, #flat, 2 do
    fields[flat[i]] = flat[i + 1]
  end
  return fields
end
