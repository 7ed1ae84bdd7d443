-- Extend KEYS[1] to ARGV[2] seconds only while it still holds ARGV[1] (a claim that is still pending).
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return 0
