-- Close digests: take each one's events (in join order) and end it, once; a repeated close returns
-- the same events again.
-- KEYS: for each item, 4 keys of its (user, workflow, digest key): open digest hash (with the first
--       event), the list of its later events,
--       sealed hash, and this digest's closed record
-- ARGV: how long a closed record is kept (ms), then for each item its digest id
-- Returns, for each item in turn, the events as one JSON array, or false for a digest that is neither
-- open, sealed nor closed.
-- On a Redis Cluster a call carries one item (its user's keys share a slot); on one server, many.
local keep = ARGV[1]
local out = {}
for i = 0, #KEYS / 4 - 1 do
  local open, events, sealed, closed = KEYS[4 * i + 1], KEYS[4 * i + 2], KEYS[4 * i + 3], KEYS[4 * i + 4]
  local id = ARGV[i + 2]
  local array = redis.call('GET', closed)
  if not array then
    local state = redis.call('HMGET', open, 'id', 'first')
    if state[1] == id then
      local list = redis.call('LRANGE', events, 0, -1)
      if state[2] then  -- opened before first events moved into the hash: all are in the list
        table.insert(list, 1, state[2])
      end
      array = '[' .. table.concat(list, ',') .. ']'
      redis.call('DEL', open, events)
    else
      array = redis.call('HGET', sealed, id)
      if array then
        redis.call('HDEL', sealed, id)
      end
    end
    if array then
      redis.call('SET', closed, array, 'PX', keep)
    end
  end
  out[#out + 1] = array
end
return out
