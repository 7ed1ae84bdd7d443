-- Claim an idempotency key for a notification id, or extend the claim that id already holds.
-- KEYS[1]: the key; ARGV[1]: notification id; ARGV[2]: seconds the claim must last at least
-- Returns the id that held the key before (false when it was free). A claim held by the same id is
-- extended to ARGV[2] seconds if it had less left (never shortened), which turns a producer's pending
-- claim into the router's full one; a claim held by another id is left alone.
local current = redis.call('GET', KEYS[1])
local ttl = tonumber(ARGV[2])
if not current then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ttl)
elseif current == ARGV[1] and redis.call('TTL', KEYS[1]) < ttl then
  redis.call('EXPIRE', KEYS[1], ttl)
end
return current
