-- Read the suppression entries of many identifiers of one shard in one call.
-- KEYS[i] is the suppression hash holding ARGV[i]. Returns the raw values (nil if absent).
local out = {}
for i = 1, #KEYS do
  out[i] = redis.call('HGET', KEYS[i], ARGV[i])
end
return out
