-- Record a consent state for one identifier and audit it with its evidence, unless the
-- identifier was erased: an erased person cannot be permissioned again by the API or an
-- import (checked in the same call as the write, like apply_event.lua and
-- record_message.lua).
-- KEYS[1] consent hash, KEYS[2] audit list, KEYS[3] suppression hash (same bucket)
-- ARGV: 1 field, 2 packed consent, 3 event id, 4 audit JSON, 5 the identifier's
--       erased-entry field or ''
-- Returns 1, or 0 (nothing written) when the identifier is erased.
if ARGV[5] ~= '' and redis.call('HEXISTS', KEYS[3], ARGV[5]) == 1 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('RPUSH', KEYS[2], ARGV[3] .. '|consented|' .. ARGV[4])
return 1
