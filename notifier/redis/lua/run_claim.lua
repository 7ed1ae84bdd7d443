-- Claim a run's step for one worker before it takes it, so two tasks for the same step (a repeated
-- timer, a redelivery racing the original) never both take it. The claim is a lease: a worker killed
-- while holding it loses it when it expires, and the step is taken again then.
-- KEYS: run hash
-- ARGV: step, lease end (epoch s), now (epoch s)
-- Returns 'ok', 'stale' (the run is not at that step), 'busy' followed by the lease's end, or the
-- run's status when it is over (cancelled, done) or 'gone'.
local status = redis.call('HGET', KEYS[1], 'status')
if not status then
  return {'gone'}
end
if status == 'cancelled' or status == 'done' then
  return {status}
end
if redis.call('HGET', KEYS[1], 'step') ~= ARGV[1] then
  return {'stale'}
end
local lease = tonumber(redis.call('HGET', KEYS[1], 'lease') or '0')
if lease > tonumber(ARGV[3]) then
  return {'busy', tostring(lease)}
end
redis.call('HSET', KEYS[1], 'lease', ARGV[2])
return {'ok'}
