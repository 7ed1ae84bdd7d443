-- Append one batch of delivery events to the buffer stream, unless it is full.
-- KEYS: the events stream, the dropped-events counter
-- ARGV: the most entries the stream may hold, the number of events in this batch, the batch (JSON)
-- Returns 1 if appended, 0 if the stream was full (the batch's events were added to the counter).
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then
  redis.call('INCRBY', KEYS[2], ARGV[2])
  return 0
end
redis.call('XADD', KEYS[1], '*', 'e', ARGV[3])
return 1
