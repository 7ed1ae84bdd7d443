-- Record workflow runs that were just started, in the state their first steps left them (the
-- caller took those steps before calling: a worker killed in between is redelivered and takes them
-- again, which receipts and idempotent appends make harmless). A run that exists (recorded by an
-- earlier attempt, or cancelled before it started) is left alone.
-- KEYS: for each item, 2 keys: run hash, the user's runs sorted set
-- ARGV: now, ttl, then groups of items that share their fields (a broadcast's runs share all but
--       their keys): the number of items k, run id, workflow type, step, status, until (epoch s or
--       ''), cancel key or '', the number of log entries n, then n pairs of log field and log JSON
-- Returns, for each item, 1 if recorded, 0 if the run already existed.
-- On a Redis Cluster a call carries one item (its user's keys share a slot); on one server, many.
local now, ttl = ARGV[1], ARGV[2]
local cutoff = tonumber(now) - tonumber(ttl)
local out = {}
local a, key = 3, 1
while a <= #ARGV do
  local k, run_id, n = tonumber(ARGV[a]), ARGV[a + 1], tonumber(ARGV[a + 7])
  local fields = {'workflow', ARGV[a + 2], 'step', ARGV[a + 3], 'status', ARGV[a + 4], 'created', now}
  if ARGV[a + 5] ~= '' then
    fields[#fields + 1] = 'until'
    fields[#fields + 1] = ARGV[a + 5]
  end
  if ARGV[a + 6] ~= '' then
    fields[#fields + 1] = 'cancel_key'
    fields[#fields + 1] = ARGV[a + 6]
  end
  for j = a + 8, a + 7 + 2 * n do
    fields[#fields + 1] = ARGV[j]
  end
  for _ = 1, k do
    local run, runs = KEYS[key], KEYS[key + 1]
    key = key + 2
    if redis.call('EXISTS', run) == 1 then
      out[#out + 1] = 0
    else
      redis.call('HSET', run, unpack(fields))
      redis.call('EXPIRE', run, ttl)
      redis.call('ZADD', runs, now, run_id)
      redis.call('ZREMRANGEBYSCORE', runs, '-inf', cutoff)
      redis.call('EXPIRE', runs, ttl)
      out[#out + 1] = 1
    end
  end
  a = a + 8 + 2 * n
end
return out
