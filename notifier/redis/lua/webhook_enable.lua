-- Turn an event webhook subscription on again, its failure time forgotten; 0 if it does not exist
-- (a removed subscription is not recreated). KEYS[1] the subscription hash.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[1], 'state', 'active')
redis.call('HDEL', KEYS[1], 'disabled_at', 'disabled_reason', 'failing_since')
return 1
