-- Close one digest: take its events (in join order) and end it, once; a repeated close returns the
-- same events again.
-- KEYS: of its (user, workflow, digest key): open digest hash, its events list, sealed hash, and this
--       digest's closed record
-- ARGV: digest id, how long the closed record is kept (ms)
-- Returns the events as one JSON array, or false for a digest that is neither open, sealed nor closed.
local open, events, sealed, closed = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id, keep = ARGV[1], ARGV[2]
local done = redis.call('GET', closed)
if done then
  return done
end
local array
if redis.call('HGET', open, 'id') == id then
  array = '[' .. table.concat(redis.call('LRANGE', events, 0, -1), ',') .. ']'
  redis.call('DEL', open, events)
else
  array = redis.call('HGET', sealed, id)
  if not array then
    return false
  end
  redis.call('HDEL', sealed, id)
end
redis.call('SET', closed, array, 'PX', keep)
return array
