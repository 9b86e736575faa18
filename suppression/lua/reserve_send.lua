-- Take one of a capped number's marketing slots before the text is handed to the upstream,
-- so concurrent sends (and workers) cannot all pass a per-24 h cap they each read as open.
-- KEYS[1] sends hash, KEYS[2] suppression hash (same bucket, one slot)
-- ARGV: 1 field, 2 now (s), 3 cap, 4 window (s), 5 how many send times to keep,
--       6 the identifier's erased-entry field or ''
-- Returns {1} when the slot was taken (now appended to the send times), {0, t...} with the
-- times inside the window when the cap is reached, {-1} when the identifier is erased.
if ARGV[6] ~= '' and redis.call('HEXISTS', KEYS[2], ARGV[6]) == 1 then return {-1} end
local now, window = tonumber(ARGV[2]), tonumber(ARGV[4])
local times, recent = {}, {0}
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then
  for t in string.gmatch(cur, '[^,]+') do
    table.insert(times, t)
    if now - tonumber(t) < window then table.insert(recent, tonumber(t)) end
  end
end
if #recent - 1 >= tonumber(ARGV[3]) then return recent end
table.insert(times, ARGV[2])
local keep = tonumber(ARGV[5])
while #times > keep do table.remove(times, 1) end
redis.call('HSET', KEYS[1], ARGV[1], table.concat(times, ','))
return {1}
