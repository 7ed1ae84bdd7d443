-- Append notifications to users' inboxes, each once, and announce them live.
-- PUBLISH (the command) is defined by notifier/redis/scripts.py: SPUBLISH on a Redis Cluster.
-- KEYS: for each item, 5 keys: inbox stream, id hash, unread set, live channel, epoch hash
-- ARGV: max length, trim slack, the live event's template (notifier.state.inbox.NEW_ENTRY_EVENT) as
--       the 4 pieces around its fields (entry id, unread count, notification JSON), then for each
--       item: notification id, notification JSON, publish (1/0)
-- The epoch hash records the stream's history for resuming clients (notifier.state.inbox.Position):
-- a stream's first entry (a new stream, one whose keys were lost, or one its deletes emptied) drops
-- it, so the stream gets a new epoch when a client next connects (inbox_epoch.lua); a trim records
-- the newest id it removed as `trimmed`. Both happen only on those rare appends, and neither creates
-- a key on the append that creates a stream.
-- Returns, for each item in turn: entry id, unread count, 1 if newly added / 0 if it was already there.
-- On a Redis Cluster a call carries one item (its user's keys share a slot); on one server, many.
local maxlen, slack = tonumber(ARGV[1]), tonumber(ARGV[2])
local e1, e2, e3, e4 = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local out = {}
for i = 0, #KEYS / 5 - 1 do
  local inbox, ids, unread_set, live = KEYS[5 * i + 1], KEYS[5 * i + 2], KEYS[5 * i + 3], KEYS[5 * i + 4]
  local history = KEYS[5 * i + 5]
  local nid, payload, publish = ARGV[3 * i + 7], ARGV[3 * i + 8], ARGV[3 * i + 9]
  local existing = redis.call('HGET', ids, nid)
  if existing then
    out[#out + 1] = existing
    out[#out + 1] = redis.call('SCARD', unread_set)
    out[#out + 1] = 0
  else
    local id = redis.call('XADD', inbox, '*', 'nid', nid, 'n', payload)
    redis.call('HSET', ids, nid, id)
    redis.call('SADD', unread_set, nid)
    local len = redis.call('XLEN', inbox)
    if len == 1 then
      -- a new stream, or one its deletes emptied: either way a new epoch (a client told it missed
      -- something reloads its list, which a delete it did not see needs anyway)
      redis.call('DEL', history)
    end
    -- Trim in batches (like MAXLEN ~, amortised) but drop the trimmed ids from the hash and the
    -- unread set in the same step, so the unread count never counts an entry that is gone.
    if len > maxlen + slack then
      local old = redis.call('XRANGE', inbox, '-', '+', 'COUNT', len - maxlen)
      for _, entry in ipairs(old) do
        local fields = entry[2]
        for f = 1, #fields, 2 do
          if fields[f] == 'nid' then
            redis.call('HDEL', ids, fields[f + 1])
            redis.call('SREM', unread_set, fields[f + 1])
          end
        end
      end
      redis.call('XTRIM', inbox, 'MAXLEN', maxlen)
      redis.call('HSET', history, 'trimmed', old[#old][1])
    end
    local unread = redis.call('SCARD', unread_set)
    if publish == '1' then
      redis.call(PUBLISH, live, e1 .. id .. e2 .. unread .. e3 .. payload .. e4)
    end
    out[#out + 1] = id
    out[#out + 1] = unread
    out[#out + 1] = 1
  end
end
return out
