-- An event webhook attempt failed: remember when its failures began (the first since the last success)
-- and, if the subscription is active and has failed since longer than ARGV[2] seconds, disable it.
-- KEYS[1] the subscription hash; ARGV[1] now (epoch s), ARGV[2] seconds until disabled, ARGV[3] why.
-- Returns {-1} for a removed subscription (nothing is recreated), else {disabled now (0/1), failing since}.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {-1}
end
redis.call('HSETNX', KEYS[1], 'failing_since', ARGV[1])
local since = redis.call('HGET', KEYS[1], 'failing_since')
if redis.call('HGET', KEYS[1], 'state') == 'active' and tonumber(ARGV[1]) - tonumber(since) >= tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'state', 'disabled', 'disabled_at', ARGV[1], 'disabled_reason', ARGV[3])
  return {1, since}
end
return {0, since}
