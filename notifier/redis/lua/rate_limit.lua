-- Sliding-window rate limits for one or more users, each over several channels, in one atomic step.
-- KEYS: the sorted sets (send times in ms) of every checked (user, channel), user after user
-- ARGV: now (ms), then for each user: member (unique per send), its key count n, then limit and
--       window (ms) for each of its n keys
-- Returns one 1 (allowed, counted) or 0 (over the limit) per key, in KEYS order.
-- On a Redis Cluster a call carries one user (whose keys share a slot); on one server, many.
local now = tonumber(ARGV[1])
local result = {}
local a, k = 2, 1
while a <= #ARGV do
  local member, n = ARGV[a], tonumber(ARGV[a + 1])
  a = a + 2
  for _ = 1, n do
    local key, limit, window = KEYS[k], tonumber(ARGV[a]), tonumber(ARGV[a + 1])
    a = a + 2
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
    if redis.call('ZCARD', key) < limit then
      redis.call('ZADD', key, now, member)
      redis.call('PEXPIRE', key, window)
      result[k] = 1
    else
      result[k] = 0
    end
    k = k + 1
  end
end
return result
