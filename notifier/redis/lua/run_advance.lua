-- Move a run on from step FROM, only if it is still there: a redelivered task or a stale timer finds
-- the run elsewhere (or cancelled) and changes nothing.
-- KEYS: run hash
-- ARGV: from step, to step, status (running, waiting, done), until (epoch s or ''), ttl, then pairs of
--       log field ('s<step>') and log JSON for the steps passed
-- Returns 'ok', 'stale' (the run is not at FROM) or the run's status when it is over (cancelled, done).
local status = redis.call('HGET', KEYS[1], 'status')
if not status then
  return 'gone'
end
if status == 'cancelled' or status == 'done' then
  return status
end
if redis.call('HGET', KEYS[1], 'step') ~= ARGV[1] then
  return 'stale'
end
redis.call('HSET', KEYS[1], 'step', ARGV[2], 'status', ARGV[3], 'until', ARGV[4], 'lease', 0)
for i = 6, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 'ok'
