-- Apply one opt-out or opt-in event to one identifier, idempotently.
-- All keys share the identifier's shard hash tag (one cluster slot).
-- KEYS[1] suppression hash, KEYS[2] consent hash, KEYS[3] audit stream
-- ARGV: 1 field, 2 action, 3 at_ms, 4 packed entry, 5 event id, 6 packed consent or '',
--       7 identifier (audit), 8 reason, 9 source, 10 detail JSON
-- Returns 1 (state changed), 0 (already in that state; audited), -1 (event already applied).
-- Last writer wins by event time; an opt-out wins a tie (fail towards not messaging).
local field, action, at, eid = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[5]

local function has_event(rows)
  for _, row in ipairs(rows) do
    local f = row[2]
    for i = 1, #f, 2 do
      if f[i] == 'e' and f[i + 1] == eid then return true end
    end
  end
  return false
end

-- Duplicate? Audit entries are written with the event time as stream id when the
-- stream allows it, so the exact-millisecond range finds them; otherwise scan the
-- (small, per-bucket) stream.
local last = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)
local last_ms = -1
if #last > 0 then last_ms = tonumber(string.match(last[1][1], '^(%d+)')) end
if has_event(redis.call('XRANGE', KEYS[3], ARGV[3], ARGV[3])) then return -1 end
if last_ms >= at and has_event(redis.call('XRANGE', KEYS[3], '-', '+')) then return -1 end

local cur = redis.call('HGET', KEYS[1], field)
local cur_active, cur_at = false, -1
if cur then
  local v = tonumber(cur)
  cur_active = math.floor(v / 256) % 2 == 1
  cur_at = math.floor(v / 512)
end
local new_at = math.floor(tonumber(ARGV[4]) / 512)

local effect = 'none'
if action == 'opt_out' then
  if not cur or (not cur_active and cur_at <= new_at) then
    redis.call('HSET', KEYS[1], field, ARGV[4])
    effect = 'suppressed'
  end
else
  if cur and cur_at < new_at then
    -- Keep a tombstone (inactive entry) so a replayed older opt-out cannot win.
    redis.call('HSET', KEYS[1], field, ARGV[4])
    if cur_active then effect = 'unsuppressed' end
  end
  if ARGV[6] ~= '' then redis.call('HSET', KEYS[2], field, ARGV[6]) end
end

local id = '*'
if last_ms < at then id = ARGV[3] .. '-*' end
redis.call('XADD', KEYS[3], id, 'e', eid, 't', action, 'i', ARGV[7], 'r', ARGV[8],
  's', ARGV[9], 'x', effect, 'd', ARGV[10])
if effect == 'none' then return 0 end
return 1
