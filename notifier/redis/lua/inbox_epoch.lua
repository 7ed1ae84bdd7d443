-- Give an inbox stream its epoch, if it has none yet (notifier.state.inbox.Inbox.epoch): done when a
-- client first connects rather than on the append that creates the stream, so a broadcast to new
-- inboxes creates no key more per user.
-- KEYS: inbox stream, epoch hash
-- ARGV: a fresh random epoch
-- Returns {epoch, since, trimmed} (all false when there is no stream: a lost one gets its new epoch
-- once it is recreated). `since` is the oldest kept entry: an id below it is from another stream or
-- was trimmed, and either way the client missed something.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {false, false, false}
end
local epoch = redis.call('HGET', KEYS[2], 'epoch')
if not epoch then
  local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
  epoch = ARGV[1]
  redis.call('HSET', KEYS[2], 'epoch', epoch, 'since', first[1] and first[1][1] or '0-0')
end
return redis.call('HMGET', KEYS[2], 'epoch', 'since', 'trimmed')
