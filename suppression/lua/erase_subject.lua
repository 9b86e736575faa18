-- Erase one identifier from its bucket, atomically, keeping it suppressed under a keyed hash.
-- All keys share the identifier's shard hash tag (one cluster slot).
-- KEYS[1] suppression hash, KEYS[2] consent hash, KEYS[3] audit list, KEYS[4] sends hash,
-- KEYS[5] message records list, KEYS[6] opt-out confirmation key (its NAME holds the number)
-- ARGV: 1 the identifier's stored field, 2 the identifier as audit and message records write
--       it, 3 its erased field (keys.erased_field), 4 packed entry to keep when it has no
--       active opt-out (time = now), 5 the erasure's audit line, 6 marker cutoff (ms)
-- Returns {suppression fields, consent fields, send-time fields, audit records, message
--          records, confirmation keys removed; 1 if it was erased before, else 0}.
local field, ident, erased = ARGV[1], ARGV[2], ARGV[3]
local scoped = field .. ' '  -- '<identifier> <scope>' entries (models.scoped)
local cutoff = tonumber(ARGV[6])

local function own_field(f)
  return f == field or string.sub(f, 1, #scoped) == scoped
end

local function drop_fields(key)
  local n = 0
  for _, f in ipairs(redis.call('HKEYS', key)) do
    if own_field(f) then
      redis.call('HDEL', key, f)
      n = n + 1
    end
  end
  return n
end

-- Numbers reach Redis as '%.14g' text unless formatted: entries need all their digits.
local function int_text(v)
  return string.format('%.0f', v)
end

-- The entry kept: the person's own opt-out (its time and reason are the record to honour),
-- else an earlier erasure's, else a new one that is later than any opt-in it replaces
-- (a checker still holding that opt-in in memory must see the erasure win).
local cur = redis.call('HGET', KEYS[1], field)
local prev = redis.call('HGET', KEYS[1], erased)
local keep = ARGV[4]
if cur and math.floor(tonumber(cur) / 256) % 2 == 1 then
  keep = cur
elseif prev then
  keep = prev
elseif cur then
  local cur_at, v = math.floor(tonumber(cur) / 512), tonumber(keep)
  if math.floor(v / 512) <= cur_at then keep = int_text((cur_at + 1) * 512 + v % 512) end
end
local sups = drop_fields(KEYS[1])
redis.call('HSET', KEYS[1], erased, keep)
local consents = drop_fields(KEYS[2])
local sends = drop_fields(KEYS[4])

-- A record is the person's if its JSON names them; one that cannot be read goes if it
-- holds the identifier's text at all (no plaintext may stay behind).
local function names_them(payload, item, key_name)
  local ok, rec = pcall(cjson.decode, payload or '')
  if ok and type(rec) == 'table' then return rec[key_name] == ident end
  return string.find(item, ident, 1, true) ~= nil
end

local function rewrite(key, kept, removed)
  if removed == 0 then return end
  redis.call('DEL', key)
  for i = 1, #kept, 1000 do
    redis.call('RPUSH', key, unpack(kept, i, math.min(i + 999, #kept)))
  end
end

-- Audit: '<event id>|<effect>|[at_ms, type, identifier, ...]'. A record of the last hour
-- (journal retention with room) becomes a marker that keeps only its event id and time:
-- apply_event.lua skips an event whose id is in the list, so a journal replay cannot
-- write the person back. Markers stay in place, so the list stays in time order.
local kept, audits = {}, 0
for _, item in ipairs(redis.call('LRANGE', KEYS[3], 0, -1)) do
  local eid, payload = string.match(item, '^([^|]*)|[^|]*|(.*)$')
  if names_them(payload, item, 3) then
    audits = audits + 1
    local at = tonumber(string.match(payload or '', '^%[(%d+),'))
    if at and at >= cutoff and eid and eid ~= '' then
      table.insert(kept, eid .. '|erased|[' .. int_text(at) .. ',"erased_event","","","",{}]')
    end
  else
    table.insert(kept, item)
  end
end
rewrite(KEYS[3], kept, audits)
redis.call('RPUSH', KEYS[3], ARGV[5])

-- Message records: '<at_ms>|<record JSON>' with the recipient in "to".
local msgs, messages = {}, 0
for _, item in ipairs(redis.call('LRANGE', KEYS[5], 0, -1)) do
  if names_them(string.match(item, '^%d+|(.*)$'), item, 'to') then
    messages = messages + 1
  else
    table.insert(msgs, item)
  end
end
rewrite(KEYS[5], msgs, messages)

local confirmations = redis.call('DEL', KEYS[6])
return {sups, consents, sends, audits, messages, confirmations, prev and 1 or 0}
