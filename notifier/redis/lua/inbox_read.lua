-- Mark notifications read (ids), or all of them (no ids), and tell live connections.
-- An id is a notification id or an inbox entry id (<ms>-<seq>, the id the live feed sends): the
-- notification id is looked up first, so an id is never taken for another notification's entry.
-- PUBLISH (the command) is defined by notifier/redis/scripts.py: SPUBLISH on a Redis Cluster.
-- KEYS: unread set, live channel, id hash (notification id -> entry id), inbox stream
-- ARGV: the live event's template (notifier.state.inbox.UNREAD_EVENT) as the 2 pieces around its
--       field (the unread count), then ids...
-- Returns {number newly marked read, unread count, the ids that name nothing in the inbox, the
-- notification ids newly marked read}.
local unknown, read = {}, {}
local changed = 0
if #ARGV == 2 then
  read = redis.call('SMEMBERS', KEYS[1])
  changed = #read
  redis.call('DEL', KEYS[1])
else
  for i = 3, #ARGV do
    local id = ARGV[i]
    local nid = nil
    if redis.call('HEXISTS', KEYS[3], id) == 1 then
      nid = id
    elseif string.match(id, '^%d+%-%d+$') then
      -- pcall: an id with a part past 2^64 is an error for XRANGE, and simply names nothing here
      local entries = redis.pcall('XRANGE', KEYS[4], id, id)
      if type(entries) == 'table' and entries[1] then
        local fields = entries[1][2]
        for f = 1, #fields, 2 do
          if fields[f] == 'nid' then nid = fields[f + 1] end
        end
      end
    end
    if nid then
      if redis.call('SREM', KEYS[1], nid) == 1 then
        changed = changed + 1
        read[#read + 1] = nid
      end
    else
      unknown[#unknown + 1] = id
    end
  end
end
local unread = redis.call('SCARD', KEYS[1])
if changed > 0 then
  redis.call(PUBLISH, KEYS[2], ARGV[1] .. unread .. ARGV[2])
end
return {changed, unread, unknown, read}
