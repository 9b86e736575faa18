-- Record a consent state for one identifier and audit it with its evidence.
-- KEYS[1] consent hash, KEYS[2] audit list of the bucket
-- ARGV: 1 field, 2 packed consent, 3 event id, 4 audit JSON
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('RPUSH', KEYS[2], ARGV[3] .. '|consented|' .. ARGV[4])
return 1
