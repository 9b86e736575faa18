-- Read the suppression entries of many identifiers of one shard in one call.
-- KEYS[i] is the suppression hash holding ARGV[i]. Optionally ARGV[#KEYS + i] is the field
-- of the identifier's erased entry (keys.erased_field, '' for none): read only when ARGV[i]
-- is absent, so an erased person is still found in this same call.
-- Returns the raw values (nil if absent).
local n = #KEYS
local out = {}
for i = 1, n do
  local v = redis.call('HGET', KEYS[i], ARGV[i])
  local erased = ARGV[n + i]
  if not v and erased and erased ~= '' then v = redis.call('HGET', KEYS[i], erased) end
  out[i] = v
end
return out
