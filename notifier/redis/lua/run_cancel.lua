-- Cancel a run: nothing more of it is sent. A run not started yet is created cancelled, so a start
-- that comes later (the cancel overtook it) does nothing.
-- KEYS: run hash
-- ARGV: log JSON, now, ttl
-- Returns 1 if this call cancelled it, 0 if it was already over (done or cancelled).
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'done' or status == 'cancelled' then
  return 0
end
redis.call('HSET', KEYS[1], 'status', 'cancelled', 'until', '', 'cancelled', ARGV[1])
if not status then
  redis.call('HSET', KEYS[1], 'step', 0, 'created', ARGV[2])
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
