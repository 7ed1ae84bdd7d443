-- Move runs on from the step each is at, only if it is still there: a redelivered task or a stale
-- timer finds the run elsewhere (or cancelled) and changes nothing. The lease ends with the move.
-- KEYS: the run hashes
-- ARGV: ttl, then for each run: from step, to step, status (running, waiting, done), until (epoch s
--       or ''), the number of log entries n, then n pairs of log field ('s<step>') and log JSON
-- Returns per run 'ok', 'stale' (not at FROM), or the run's status when it is over (cancelled, done)
-- or 'gone'.
-- On a Redis Cluster a call carries one run; on one server, many.
local ttl = ARGV[1]
local out = {}
local a = 2
for i, run in ipairs(KEYS) do
  local from, n = ARGV[a], tonumber(ARGV[a + 4])
  local logs = a + 5
  local now = redis.call('HMGET', run, 'status', 'step')
  if not now[1] then
    out[i] = 'gone'
  elseif now[1] == 'cancelled' or now[1] == 'done' then
    out[i] = now[1]
  elseif now[2] ~= from then
    out[i] = 'stale'
  else
    local fields = {'step', ARGV[a + 1], 'status', ARGV[a + 2], 'until', ARGV[a + 3], 'lease', 0}
    for j = logs, logs + 2 * n - 1 do
      fields[#fields + 1] = ARGV[j]
    end
    redis.call('HSET', run, unpack(fields))
    redis.call('EXPIRE', run, ttl)
    out[i] = 'ok'
  end
  a = logs + 2 * n
end
return out
