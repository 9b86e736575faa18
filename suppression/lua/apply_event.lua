-- Apply one opt-out or opt-in event to one identifier, idempotently, and audit it.
-- All keys share the identifier's shard hash tag (one cluster slot).
-- KEYS[1] suppression hash, KEYS[2] consent hash, KEYS[3] audit list of the bucket,
-- KEYS[4] used-buckets bitmap of the shard
-- ARGV: 1 field, 2 action, 3 packed entry, 4 event id, 5 packed consent (granted for an
--       opt-in, revoked for an opt-out) or '', 6 audit JSON,
--       7 bucket's bit in the shard bitmap, 8 the identifier's erased-entry field or ''
--       (apply_claimed.lua adds its claims after these)
-- Returns 1 (state changed), 0 (already in that state; audited), -1 (event already applied,
-- or the identifier is erased: nothing written).
-- Last writer wins by event time; an opt-out wins a tie (fail towards not messaging).
local field, action, eid = ARGV[1], ARGV[2], ARGV[4]

-- Replays (journal after a crash or a Redis restart) must not audit twice. The bucket's
-- audit list is small (tens of events), so scanning it is cheap and needs no extra keys.
local marker = eid .. '|'
for _, item in ipairs(redis.call('LRANGE', KEYS[3], 0, -1)) do
  if string.sub(item, 1, #marker) == marker then return -1 end
end

-- An erased person lives on only as a keyed hash (ARGV[8], '' when none applies): no
-- event may write the identifier back, neither a journal replay of an old one nor a new
-- opt-out (the hash already suppresses). Lifting an erasure is the service's job: the
-- person's own opt-in removes the hash before its event is applied.
if ARGV[8] ~= '' and redis.call('HEXISTS', KEYS[1], ARGV[8]) == 1 then
  return -1
end

local cur = redis.call('HGET', KEYS[1], field)
local cur_active, cur_at = false, -1
if cur then
  local v = tonumber(cur)
  cur_active = math.floor(v / 256) % 2 == 1
  cur_at = math.floor(v / 512)
end
local new_at = math.floor(tonumber(ARGV[3]) / 512)

local effect = 'none'
if action == 'opt_out' then
  if not cur or (not cur_active and cur_at <= new_at) then
    redis.call('HSET', KEYS[1], field, ARGV[3])
    redis.call('SETBIT', KEYS[4], ARGV[7], 1)
    effect = 'suppressed'
  end
else
  if cur and cur_at < new_at then
    -- Keep a tombstone (inactive entry) so a replayed older opt-out cannot win.
    redis.call('HSET', KEYS[1], field, ARGV[3])
    if cur_active then effect = 'unsuppressed' end
  end
end

-- Consent follows the same last-writer-wins (packed consent: time << 4 | status): an
-- opt-out revokes an older consent (never creating one), the person's own opt-in grants
-- over an older state, and a replayed older event changes nothing.
if ARGV[5] ~= '' then
  local c = redis.call('HGET', KEYS[2], field)
  local c_at = -1
  if c then c_at = math.floor(tonumber(c) / 16) end
  if c_at <= math.floor(tonumber(ARGV[5]) / 16) and (c or action ~= 'opt_out') then
    redis.call('HSET', KEYS[2], field, ARGV[5])
  end
end

redis.call('RPUSH', KEYS[3], marker .. effect .. '|' .. ARGV[6])
if effect == 'none' then return 0 end
return 1
