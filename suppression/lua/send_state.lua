-- Everything a send decision needs about one recipient, as one command (a pipeline of
-- HGETs costs the Python client about twice as much as one EVALSHA).
-- KEYS[1] suppression hash, KEYS[2] consent hash, KEYS[3] sends hash (same bucket, one slot)
-- ARGV[1] the identifier's field; ARGV[2] the field of its erased entry (keys.erased_field,
-- '' for none), read only when ARGV[1] is absent, as check_many.lua does.
-- Returns {entry, consent, sends}, each nil when absent.
local sup = redis.call('HGET', KEYS[1], ARGV[1])
if not sup and ARGV[2] and ARGV[2] ~= '' then sup = redis.call('HGET', KEYS[1], ARGV[2]) end
return {sup, redis.call('HGET', KEYS[2], ARGV[1]), redis.call('HGET', KEYS[3], ARGV[1])}
