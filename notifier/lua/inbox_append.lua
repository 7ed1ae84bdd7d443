-- Append one notification to a user's inbox, once, and announce it live.
-- PUBLISH (the command) is defined by notifier/store.py: SPUBLISH on a Redis Cluster.
-- KEYS: inbox stream, id hash, unread set, live channel
-- ARGV: notification id, notification JSON, max length, trim slack, publish (1/0)
-- Returns {entry id, unread count, 1 if newly added / 0 if it was already there}.
local existing = redis.call('HGET', KEYS[2], ARGV[1])
if existing then
  return {existing, redis.call('SCARD', KEYS[3]), 0}
end
local id = redis.call('XADD', KEYS[1], '*', 'nid', ARGV[1], 'n', ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], id)
redis.call('SADD', KEYS[3], ARGV[1])
-- Trim in batches (like MAXLEN ~, amortised) but drop the trimmed ids from the hash and the
-- unread set in the same step, so the unread count never counts an entry that is gone.
local maxlen = tonumber(ARGV[3])
local len = redis.call('XLEN', KEYS[1])
if len > maxlen + tonumber(ARGV[4]) then
  local old = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', len - maxlen)
  for _, entry in ipairs(old) do
    local fields = entry[2]
    for i = 1, #fields, 2 do
      if fields[i] == 'nid' then
        redis.call('HDEL', KEYS[2], fields[i + 1])
        redis.call('SREM', KEYS[3], fields[i + 1])
      end
    end
  end
  redis.call('XTRIM', KEYS[1], 'MAXLEN', maxlen)
end
local unread = redis.call('SCARD', KEYS[3])
if ARGV[5] == '1' then
  redis.call(PUBLISH, KEYS[4],
    '{"event":"notification","entry_id":"' .. id .. '","unread":' .. unread .. ',"notification":' .. ARGV[2] .. '}')
end
return {id, unread, 1}
