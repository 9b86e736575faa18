-- Retention for a slice of one shard's buckets: drop message records and audit records
-- older than the tenant's cutoffs, and send times (caps, STOP footer) of recipients not
-- sent to since the message cutoff. Suppression and consent hashes are never touched.
-- All keys share the shard's hash tag (one cluster slot).
-- KEYS: per bucket, three keys in this order: message records list, audit list, sends hash
-- ARGV: 1 message cutoff (ms), 2 audit cutoff (ms), 3 most items removed by this call
-- Returns {message records removed, audit records removed, send-time fields removed,
--          1 if the budget ran out before the last key (call again) else 0}.
--
-- Both lists are appended in time order, so what is too old is a prefix: count it in
-- chunks from the head and LTRIM once (an emptied list disappears). A record whose time
-- cannot be read ends the count: what cannot be dated is kept, never guessed at.
local msg_cutoff, audit_cutoff = tonumber(ARGV[1]), tonumber(ARGV[2])
local left = tonumber(ARGV[3])
local CHUNK = 64
local MSG_AT = '^(%d+)|'                       -- '<at_ms>|<record JSON>'
local AUDIT_AT = '^[^|]*|[^|]*|%[(%d+),'       -- '<event id>|<effect>|[<at_ms>,...]'

local function old_prefix(key, cutoff, pattern)
  local n = 0
  while n < left do
    local want = math.min(CHUNK, left - n)
    local chunk = redis.call('LRANGE', key, n, n + want - 1)
    for _, line in ipairs(chunk) do
      local at = tonumber(string.match(line, pattern))
      if at == nil or at >= cutoff then return n end
      n = n + 1
    end
    if #chunk < want then return n end
  end
  return n
end

local function trim(key, cutoff, pattern)
  local n = old_prefix(key, cutoff, pattern)
  if n > 0 then redis.call('LTRIM', key, n, -1) end
  left = left - n
  return n
end

local msgs, audits, sends = 0, 0, 0
local send_cutoff_s = math.floor(msg_cutoff / 1000)
for i = 1, #KEYS, 3 do
  msgs = msgs + trim(KEYS[i], msg_cutoff, MSG_AT)
  audits = audits + trim(KEYS[i + 1], audit_cutoff, AUDIT_AT)
  -- Values are 't1,t2,...' in seconds, newest last (record_message.lua).
  local all = redis.call('HGETALL', KEYS[i + 2])
  for j = 1, #all, 2 do
    local last = tonumber(string.match(all[j + 1], '(%d+)$'))
    if last ~= nil and last < send_cutoff_s then
      redis.call('HDEL', KEYS[i + 2], all[j])
      sends = sends + 1
      left = left - 1
    end
  end
  -- Spent: stop here; the caller calls again (the buckets done so far cost little then).
  if left <= 0 then return {msgs, audits, sends, 1} end
end
return {msgs, audits, sends, 0}
