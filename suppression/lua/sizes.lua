-- Sizes of many keys of one slot, Redis-side: {index, size, index, size, ...} for the
-- non-empty ones. 'active' counts suppression entries whose active bit (256) is set,
-- leaving out erased subjects' hashed entries (fields ' #…'), which listings never show.
-- KEYS: the keys (one slot); ARGV[1]: 'active', 'hlen' or 'llen'.
local mode, out = ARGV[1], {}
for i = 1, #KEYS do
  local n = 0
  if mode == 'active' then
    local all = redis.call('HGETALL', KEYS[i])
    for j = 1, #all, 2 do
      local x = tonumber(all[j + 1])
      if x and math.floor(x / 256) % 2 == 1 and string.sub(all[j], 1, 2) ~= ' #' then
        n = n + 1
      end
    end
  elseif mode == 'hlen' then
    n = redis.call('HLEN', KEYS[i])
  else
    n = redis.call('LLEN', KEYS[i])
  end
  if n > 0 then out[#out + 1] = i; out[#out + 1] = n end
end
return out
