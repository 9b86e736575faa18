-- Record one send attempt and, for a marketing text that was sent, its time for caps.
-- KEYS[1] sends hash, KEYS[2] message records list, KEYS[3] suppression hash (same bucket)
-- ARGV: 1 field, 2 send time in s ('' unless a marketing text was sent), 3 record,
--       4 retention cutoff in ms, 5 how many send times to keep, 6 the identifier's
--       erased-entry field or ''
-- Returns 1, or 0 when the identifier is erased: a record would name the person again.
if ARGV[6] ~= '' and redis.call('HEXISTS', KEYS[3], ARGV[6]) == 1 then return 0 end
if ARGV[2] ~= '' then
  local times = {}
  local cur = redis.call('HGET', KEYS[1], ARGV[1])
  if cur then
    for t in string.gmatch(cur, '[^,]+') do table.insert(times, t) end
  end
  table.insert(times, ARGV[2])
  local keep = tonumber(ARGV[5])
  while #times > keep do table.remove(times, 1) end
  redis.call('HSET', KEYS[1], ARGV[1], table.concat(times, ','))
end
redis.call('RPUSH', KEYS[2], ARGV[3])
-- Records are appended in time order: trimming the head keeps the list within
-- retention without ever scanning it (a few per call, so the cost stays flat).
local cutoff = tonumber(ARGV[4])
for _ = 1, 16 do
  local head = redis.call('LINDEX', KEYS[2], 0)
  if not head then break end
  local at = tonumber(string.match(head, '^(%d+)|'))
  if at == nil or at >= cutoff then break end
  redis.call('LPOP', KEYS[2])
end
return 1
