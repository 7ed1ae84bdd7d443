-- Change one state of notifications in a user's inbox (seen, archived, snoozed, interacted), or read
-- the counts, and tell live connections. Appends touch none of these keys: an entry is unseen when it
-- is newer than the "seen up to" marker and not in the seen set (archiving or snoozing one puts it
-- there, waking takes it out). How many entries are newer than the marker comes from the stream's own
-- entries-added counter: those added since the marker was set, less those deleted since (kept in the
-- marker by inbox_delete.lua), at most the stream's length (once the cap trims past the marker, every
-- kept entry is newer). Every count is taken against the entries still in the inbox, so it stays exact
-- when the cap trims entries whose states are still set (pruned here once a set outgrows the cap).
-- An id is a notification id or an inbox entry id (<ms>-<seq>), as in inbox_read.lua.
-- PUBLISH (the command) is defined by notifier/redis/scripts.py: SPUBLISH on a Redis Cluster.
-- KEYS: inbox stream, id hash, unread set, live channel, seen marker hash, seen set, archived set,
--       snoozed sorted set, interacted set
-- ARGV: operation (seen | archive | unarchive | snooze | unsnooze | wake | interact | counts), the cap,
--       a value (snooze: until, epoch s; wake: now), the live event's template
--       (notifier.state.inbox.STATE_EVENT) as the 7 pieces around its 6 fields (state, value, ids,
--       all, unread, unseen), then ids... (none: every notification)
-- Returns {number changed, unread, unseen, total, archived, snoozed, unknown ids, changed notification ids}.
local inbox, ids_h, unread_s, live, upto_k, seen_s, archived_s, snoozed_z, interacted_s =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local op, cap, value = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local FIRST = 11
local all = #ARGV < FIRST

local function after(a, b)
  -- whether entry id a is newer than b (ms and seq compared as numbers)
  local am, as = string.match(a, '^(%d+)%-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)%-(%d+)$')
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  return am > bm or (am == bm and as > bs)
end

local function nid_of(fields)
  for f = 1, #fields, 2 do
    if fields[f] == 'nid' then return fields[f + 1] end
  end
end

local function upto()
  return redis.call('HGET', upto_k, 'upto') or '0-0'
end

local function entries_added()
  local info = redis.pcall('XINFO', 'STREAM', inbox)
  if type(info) ~= 'table' or info.err then return 0 end
  for i = 1, #info, 2 do
    if info[i] == 'entries-added' then return info[i + 1] end
  end
  return 0
end

local function set_marker(entry_id)
  redis.call('HSET', upto_k, 'upto', entry_id, 'added', entries_added(), 'removed', 0)
  redis.call('DEL', seen_s)
end

local function newer_than(marker)
  if marker == '0-0' then return redis.call('XRANGE', inbox, '-', '+') end
  return redis.call('XRANGE', inbox, '(' .. marker, '+')
end

local present

local function unseen_count()
  local len, added = redis.call('XLEN', inbox), entries_added()
  local at, removed = unpack(redis.call('HMGET', upto_k, 'added', 'removed'))
  at, removed = tonumber(at) or 0, tonumber(removed) or 0
  local newer = len
  if added >= at then newer = math.max(0, math.min(len, added - at - removed)) end
  return newer - present(redis.call('SMEMBERS', seen_s))
end

function present(members)
  local n = 0
  for _, nid in ipairs(members) do
    if redis.call('HEXISTS', ids_h, nid) == 1 then n = n + 1 end
  end
  return n
end

local function prune(set)
  -- members whose entry the cap trimmed: kept until the set outgrows the inbox, then dropped
  if redis.call('SCARD', set) > cap then
    for _, nid in ipairs(redis.call('SMEMBERS', set)) do
      if redis.call('HEXISTS', ids_h, nid) == 0 then redis.call('SREM', set, nid) end
    end
  end
end

local function resolve(id)
  -- the notification id and entry id an id names, or nil
  local entry = redis.call('HGET', ids_h, id)
  if entry then return id, entry end
  if string.match(id, '^%d+%-%d+$') then
    local entries = redis.pcall('XRANGE', inbox, id, id)
    if type(entries) == 'table' and entries[1] then return nid_of(entries[1][2]), id end
  end
end

local changed, unknown, event_value = {}, {}, 'true'
local targets = {}
if not all then
  for i = FIRST, #ARGV do
    local nid, entry = resolve(ARGV[i])
    if nid then targets[#targets + 1] = {nid, entry} else unknown[#unknown + 1] = ARGV[i] end
  end
end

local function seen_too(t)
  -- archived or snoozed entries leave the unseen count with the default list
  if after(t[2], upto()) then redis.call('SADD', seen_s, t[1]) end
end

local function each_entry()
  -- every entry as {nid, entry id}
  local flat = redis.call('HGETALL', ids_h)
  local out = {}
  for i = 1, #flat, 2 do out[#out + 1] = {flat[i], flat[i + 1]} end
  return out
end

if op == 'seen' then
  local marker = upto()
  if all then
    local newest = redis.call('XREVRANGE', inbox, '+', '-', 'COUNT', 1)[1]
    if newest and after(newest[1], marker) then
      for _, entry in ipairs(newer_than(marker)) do
        local nid = nid_of(entry[2])
        if redis.call('SISMEMBER', seen_s, nid) == 0 then changed[#changed + 1] = nid end
      end
      set_marker(newest[1])
    end
  else
    for _, t in ipairs(targets) do
      if after(t[2], marker) and redis.call('SADD', seen_s, t[1]) == 1 then changed[#changed + 1] = t[1] end
    end
    prune(seen_s)
  end
elseif op == 'archive' then
  if all then targets = each_entry() end
  for _, t in ipairs(targets) do
    if redis.call('SADD', archived_s, t[1]) == 1 then changed[#changed + 1] = t[1] end
    redis.call('SREM', unread_s, t[1])
    if not all then seen_too(t) end
  end
  if all then
    local newest = redis.call('XREVRANGE', inbox, '+', '-', 'COUNT', 1)[1]
    if newest and after(newest[1], upto()) then set_marker(newest[1]) end
  end
  prune(archived_s)
  prune(seen_s)
elseif op == 'unarchive' then
  event_value = 'false'
  if all then
    for _, nid in ipairs(redis.call('SMEMBERS', archived_s)) do
      if redis.call('HEXISTS', ids_h, nid) == 1 then changed[#changed + 1] = nid end
    end
    redis.call('DEL', archived_s)
  else
    for _, t in ipairs(targets) do
      if redis.call('SREM', archived_s, t[1]) == 1 then changed[#changed + 1] = t[1] end
    end
  end
elseif op == 'snooze' then
  event_value = value
  if all then targets = each_entry() end
  for _, t in ipairs(targets) do
    redis.call('ZADD', snoozed_z, value, t[1])
    redis.call('SREM', unread_s, t[1])
    seen_too(t)
    changed[#changed + 1] = t[1]
  end
  prune(seen_s)
elseif op == 'unsnooze' or op == 'wake' then
  -- back as unread (and unseen, unless "mark all seen" passed it)
  event_value = 'false'
  local nids = {}
  if op == 'wake' then
    nids = redis.call('ZRANGEBYSCORE', snoozed_z, '-inf', value)
  elseif all then
    nids = redis.call('ZRANGE', snoozed_z, 0, -1)
  else
    for _, t in ipairs(targets) do nids[#nids + 1] = t[1] end
  end
  for _, nid in ipairs(nids) do
    if redis.call('ZREM', snoozed_z, nid) == 1 and redis.call('HEXISTS', ids_h, nid) == 1 then
      -- an archived one stays read: unread counts only what the default list shows
      if redis.call('SISMEMBER', archived_s, nid) == 0 then redis.call('SADD', unread_s, nid) end
      redis.call('SREM', seen_s, nid)
      changed[#changed + 1] = nid
    end
  end
elseif op == 'interact' then
  if all then targets = each_entry() end
  for _, t in ipairs(targets) do
    if redis.call('SADD', interacted_s, t[1]) == 1 then changed[#changed + 1] = t[1] end
  end
  prune(interacted_s)
elseif op ~= 'counts' then
  return redis.error_reply('unknown inbox state operation ' .. op)
end

local unread, unseen = redis.call('SCARD', unread_s), unseen_count()
local archived = present(redis.call('SMEMBERS', archived_s))
local snoozed = 0
for _, nid in ipairs(redis.call('ZRANGE', snoozed_z, 0, -1)) do
  if redis.call('HEXISTS', ids_h, nid) == 1 and redis.call('SISMEMBER', archived_s, nid) == 0 then
    snoozed = snoozed + 1
  end
end
local total = redis.call('XLEN', inbox) - archived - snoozed
if #changed > 0 then
  local state = ({seen = 'seen', archive = 'archived', unarchive = 'archived', snooze = 'snoozed',
                  unsnooze = 'snoozed', wake = 'snoozed', interact = 'interacted'})[op]
  local ids_json = cjson.encode(changed)
  redis.call(PUBLISH, live, ARGV[4] .. state .. ARGV[5] .. event_value .. ARGV[6] .. ids_json .. ARGV[7] ..
    (all and 'true' or 'false') .. ARGV[8] .. unread .. ARGV[9] .. unseen .. ARGV[10])
end
return {#changed, unread, unseen, total, archived, snoozed, unknown, changed}
