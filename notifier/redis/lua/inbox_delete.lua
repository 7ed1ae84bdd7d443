-- Delete notifications from a user's inbox by notification id.
-- PUBLISH (the command) is defined by notifier/redis/scripts.py: SPUBLISH on a Redis Cluster.
-- KEYS: inbox stream, id hash, unread set, live channel, then the state keys it also clears: seen set,
--       archived set, snoozed sorted set, interacted set, and the seen marker hash, which counts the
--       entries deleted after its entry id (inbox_state.lua's unseen count)
-- ARGV: the live event's template (notifier.state.inbox.UNREAD_EVENT) as the 2 pieces around its
--       field (the unread count), then notification ids...
-- Returns {number deleted, unread count}.
local function after(a, b)
  local am, as = string.match(a, '^(%d+)%-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)%-(%d+)$')
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  return am > bm or (am == bm and as > bs)
end

local upto = redis.call('HGET', KEYS[9], 'upto') or '0-0'
local deleted = 0
for i = 3, #ARGV do
  local nid = ARGV[i]
  local id = redis.call('HGET', KEYS[2], nid)
  if id then
    local gone = redis.call('XDEL', KEYS[1], id)
    deleted = deleted + gone
    if gone == 1 and after(id, upto) then redis.call('HINCRBY', KEYS[9], 'removed', 1) end
    redis.call('HDEL', KEYS[2], nid)
  end
  redis.call('SREM', KEYS[3], nid)
  redis.call('SREM', KEYS[5], nid)
  redis.call('SREM', KEYS[6], nid)
  redis.call('ZREM', KEYS[7], nid)
  redis.call('SREM', KEYS[8], nid)
end
local unread = redis.call('SCARD', KEYS[3])
if deleted > 0 then
  redis.call(PUBLISH, KEYS[4], ARGV[1] .. unread .. ARGV[2])
end
return {deleted, unread}
