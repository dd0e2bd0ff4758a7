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
