-- Start a workflow run, once: a run that exists (started, or cancelled before it started) is left alone.
-- KEYS: run hash, the user's runs sorted set
-- ARGV: run id, workflow type, notification JSON, status, until (epoch s or ''), cancel key or '', now, ttl
-- Returns 1 if started, 0 if the run already existed.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], 'workflow', ARGV[2], 'n', ARGV[3], 'step', 0, 'status', ARGV[4],
           'until', ARGV[5], 'cancel_key', ARGV[6], 'created', ARGV[7])
redis.call('EXPIRE', KEYS[1], ARGV[8])
redis.call('ZADD', KEYS[2], ARGV[7], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', tonumber(ARGV[7]) - tonumber(ARGV[8]))
redis.call('EXPIRE', KEYS[2], ARGV[8])
return 1
