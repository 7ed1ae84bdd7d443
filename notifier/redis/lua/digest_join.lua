-- Join events to their digests, each event once: open the digest if none is open, else join the open
-- one; seal it (closed to new events, kept for its owner's close) when it reaches its maximum.
-- KEYS: for each item, 4 keys of one (user, workflow, digest key): open digest hash (id, due, and the
--       first event), the list of its later events (1 + its length is the count), sealed hash (digest
--       id -> events JSON array), this run's join record
-- ARGV: now (ms), margin (ms: how long state outlives its window), late (ms: how long after its due
--       time an open digest is left to its owner before the next event seals it and opens a new one),
--       then groups of items that share their arguments (a broadcast's joins share all but their keys):
--       the number of items k, run id, event JSON, window (ms), max events (0: no maximum)
-- Returns, for each item in turn, its join record "count\ndue (ms)\nfull (1/0)\ndigest id"; a run
-- already joined gets the record its first join returned.
-- On a Redis Cluster a call carries one item (its user's keys share a slot); on one server, many.
-- The first event lives in the open hash, so opening a digest (what every recipient of a broadcast
-- does) creates one key, not two.
local now, margin, late = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])

-- Move the open digest's events to the sealed hash (where only a close takes them) and end it.
local function seal(open, events, sealed, id, first)
  local list = redis.call('LRANGE', events, 0, -1)
  if first then  -- a digest opened before first events moved into the hash has them all in its list
    table.insert(list, 1, first)
  end
  redis.call('HSET', sealed, id, '[' .. table.concat(list, ',') .. ']')
  redis.call('PEXPIRE', sealed, margin)
  redis.call('DEL', open, events)
end

local out = {}
local a, key = 4, 1
while a <= #ARGV do
  local k, run_id, event = tonumber(ARGV[a]), ARGV[a + 1], ARGV[a + 2]
  local window, max = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  a = a + 5
  for _ = 1, k do
    local open, events, sealed, run = KEYS[key], KEYS[key + 1], KEYS[key + 2], KEYS[key + 3]
    key = key + 4
    local record = redis.call('GET', run)
    if not record then
      local state = redis.call('HMGET', open, 'id', 'due', 'first')
      local id, due, first = state[1], tonumber(state[2]), state[3]
      if id and due + late < now then
        seal(open, events, sealed, id, first)
        id = false
      end
      local count = 1
      if id then
        count = redis.call('RPUSH', events, event) + (first and 1 or 0)
        local ttl = count == 2 and redis.call('PTTL', open) or 0
        if ttl > 0 then
          redis.call('PEXPIRE', events, ttl)  -- the list lives as long as its digest
        end
      else
        id, due, first = run_id, now + window, event
        redis.call('HSET', open, 'id', id, 'due', due, 'first', event)
        redis.call('PEXPIRE', open, window + margin)
      end
      local full = 0
      if max > 0 and count >= max then
        seal(open, events, sealed, id, first)
        full = 1
      end
      record = count .. '\n' .. due .. '\n' .. full .. '\n' .. id
      redis.call('SET', run, record, 'PX', math.max(due - now, 0) + margin)
    end
    out[#out + 1] = record
  end
end
return out
