-- Sliding-window rate limit for one user over several channels, in one atomic step.
-- KEYS: one sorted set per channel (send times in ms)
-- ARGV: now (ms), member (unique per send), then limit and window (ms) for each key
-- Returns one 1 (allowed, counted) or 0 (over the limit) per key.
local now = tonumber(ARGV[1])
local result = {}
for i, key in ipairs(KEYS) do
  local limit = tonumber(ARGV[1 + 2 * i])
  local window = tonumber(ARGV[2 + 2 * i])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  if redis.call('ZCARD', key) < limit then
    redis.call('ZADD', key, now, ARGV[2])
    redis.call('PEXPIRE', key, window)
    result[i] = 1
  else
    result[i] = 0
  end
end
return result
