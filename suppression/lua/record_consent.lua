-- Record a consent state for one identifier and audit it with its evidence.
-- KEYS[1] consent hash, KEYS[2] audit stream
-- ARGV: 1 field, 2 packed consent, 3 at_ms, 4 event id, 5 identifier, 6 source, 7 detail JSON
local at = tonumber(ARGV[3])
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
local id = '*'
if #last == 0 or tonumber(string.match(last[1][1], '^(%d+)')) < at then id = ARGV[3] .. '-*' end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('XADD', KEYS[2], id, 'e', ARGV[4], 't', 'consent', 'i', ARGV[5], 'r', '',
  's', ARGV[6], 'x', 'consented', 'd', ARGV[7])
return 1
