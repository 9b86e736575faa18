-- Give back a slot reserve_send.lua took, when the upstream refused the text outright.
-- KEYS[1] sends hash; ARGV: 1 field, 2 the reserved time (s)
-- Removes the last occurrence of that time; returns 1 if one was removed.
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur then return 0 end
local times = {}
for t in string.gmatch(cur, '[^,]+') do table.insert(times, t) end
for i = #times, 1, -1 do
  if times[i] == ARGV[2] then
    table.remove(times, i)
    if #times == 0 then redis.call('HDEL', KEYS[1], ARGV[1])
    else redis.call('HSET', KEYS[1], ARGV[1], table.concat(times, ',')) end
    return 1
  end
end
return 0
