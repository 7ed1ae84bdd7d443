-- Mark notifications read (ARGV = ids), or all of them (no ARGV), and tell live connections.
-- PUBLISH (the command) is defined by notifier/store.py: SPUBLISH on a Redis Cluster.
-- KEYS: unread set, live channel
-- Returns {number newly marked read, unread count}.
local changed
if #ARGV == 0 then
  changed = redis.call('SCARD', KEYS[1])
  redis.call('DEL', KEYS[1])
else
  changed = redis.call('SREM', KEYS[1], unpack(ARGV))
end
local unread = redis.call('SCARD', KEYS[1])
if changed > 0 then
  redis.call(PUBLISH, KEYS[2], '{"event":"unread_count","unread":' .. unread .. '}')
end
return {changed, unread}
