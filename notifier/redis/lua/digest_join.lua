-- Join events to their digests, each event once: open the digest if none is open, else join the open
-- one; seal it (closed to new events, kept for its owner's close) when it reaches its maximum.
-- KEYS: for each item, 4 keys of one (user, workflow, digest key): open digest hash (id, due), its
--       events list (its length is the count), sealed hash (digest id -> events JSON array), this
--       run's join record
-- ARGV: now (ms), margin (ms: how long state outlives its window), late (ms: how long after its due
--       time an open digest is left to its owner before the next event seals it and opens a new one),
--       then for each item: run id, event JSON, window (ms), max events (0: no maximum)
-- Returns, for each item in turn, its join record "count\ndue (ms)\nfull (1/0)\ndigest id"; a run
-- already joined gets the record its first join returned.
-- On a Redis Cluster a call carries one item (its user's keys share a slot); on one server, many.
local now, margin, late = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])

-- Move the open digest's events to the sealed hash (where only a close takes them) and end it.
local function seal(open, events, sealed, id)
  local list = redis.call('LRANGE', events, 0, -1)
  redis.call('HSET', sealed, id, '[' .. table.concat(list, ',') .. ']')
  redis.call('PEXPIRE', sealed, margin)
  redis.call('DEL', open, events)
end

local out = {}
for i = 0, #KEYS / 4 - 1 do
  local open, events, sealed, run = KEYS[4 * i + 1], KEYS[4 * i + 2], KEYS[4 * i + 3], KEYS[4 * i + 4]
  local run_id, event = ARGV[4 * i + 4], ARGV[4 * i + 5]
  local window, max = tonumber(ARGV[4 * i + 6]), tonumber(ARGV[4 * i + 7])
  local record = redis.call('GET', run)
  if not record then
    local state = redis.call('HMGET', open, 'id', 'due')
    local id, due = state[1], tonumber(state[2])
    if id and due + late < now then
      seal(open, events, sealed, id)
      id = false
    end
    local count = 1
    if id then
      count = redis.call('RPUSH', events, event)
    else
      id, due = run_id, now + window
      redis.call('HSET', open, 'id', id, 'due', due)
      redis.call('RPUSH', events, event)
      redis.call('PEXPIRE', open, window + margin)
      redis.call('PEXPIRE', events, window + margin)
    end
    local full = 0
    if max > 0 and count >= max then
      seal(open, events, sealed, id)
      full = 1
    end
    record = count .. '\n' .. due .. '\n' .. full .. '\n' .. id
    redis.call('SET', run, record, 'PX', math.max(due - now, 0) + margin)
  end
  out[#out + 1] = record
end
return out
