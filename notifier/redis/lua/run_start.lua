-- Record workflow runs that were just started, in the state their first steps left them (the
-- caller took those steps before calling: a worker killed in between is redelivered and takes them
-- again, which receipts and idempotent appends make harmless). A run that exists (recorded by an
-- earlier attempt, or cancelled before it started) is left alone.
-- KEYS: for each item, 2 keys: run hash, the user's runs sorted set
-- ARGV: now, ttl, then for each item: run id, workflow type, step, status, until (epoch s or ''),
--       cancel key or '', the number of log entries n, then n pairs of log field and log JSON
-- Returns, for each item, 1 if recorded, 0 if the run already existed.
-- On a Redis Cluster a call carries one item (its user's keys share a slot); on one server, many.
local now, ttl = ARGV[1], ARGV[2]
local out = {}
local a = 3
for i = 0, #KEYS / 2 - 1 do
  local run, runs = KEYS[2 * i + 1], KEYS[2 * i + 2]
  local n = tonumber(ARGV[a + 6])
  local logs = a + 7
  if redis.call('EXISTS', run) == 1 then
    out[#out + 1] = 0
  else
    local fields = {'workflow', ARGV[a + 1], 'step', ARGV[a + 2], 'status', ARGV[a + 3], 'created', now}
    if ARGV[a + 4] ~= '' then
      fields[#fields + 1] = 'until'
      fields[#fields + 1] = ARGV[a + 4]
    end
    if ARGV[a + 5] ~= '' then
      fields[#fields + 1] = 'cancel_key'
      fields[#fields + 1] = ARGV[a + 5]
    end
    for j = logs, logs + 2 * n - 1 do
      fields[#fields + 1] = ARGV[j]
    end
    redis.call('HSET', run, unpack(fields))
    redis.call('EXPIRE', run, ttl)
    redis.call('ZADD', runs, now, ARGV[a])
    redis.call('ZREMRANGEBYSCORE', runs, '-inf', tonumber(now) - tonumber(ttl))
    redis.call('EXPIRE', runs, ttl)
    out[#out + 1] = 1
  end
  a = logs + 2 * n
end
return out
