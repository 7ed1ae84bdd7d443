-- Claim runs' steps for one worker before it takes them, so two tasks for the same step (a repeated
-- timer, a redelivery racing the original) never both take it. The claim is a lease: a worker killed
-- while holding it loses it when it expires, and the step is taken again then.
-- KEYS: the run hashes
-- ARGV: lease end (epoch s), now (epoch s), then each run's step
-- Returns per run 'ok', 'stale' (not at that step), 'busy:<lease end>', or the run's status when it is
-- over (cancelled, done) or 'gone'.
-- On a Redis Cluster a call carries one run; on one server, many.
local lease_end, now = ARGV[1], tonumber(ARGV[2])
local out = {}
for i, run in ipairs(KEYS) do
  local status = redis.call('HGET', run, 'status')
  if not status then
    out[i] = 'gone'
  elseif status == 'cancelled' or status == 'done' then
    out[i] = status
  elseif redis.call('HGET', run, 'step') ~= ARGV[i + 2] then
    out[i] = 'stale'
  else
    local lease = tonumber(redis.call('HGET', run, 'lease') or '0')
    if lease > now then
      out[i] = 'busy:' .. tostring(lease)
    else
      redis.call('HSET', run, 'lease', lease_end)
      out[i] = 'ok'
    end
  end
end
return out
