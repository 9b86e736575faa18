-- Retention for a tenant's own lists: review items (possible opt-outs for ops) and the
-- tenant-level audit (export decisions...). Both keys carry the tenant's hash tag.
-- KEYS[1] review list (LPUSH: newest first), KEYS[2] tenant audit list (RPUSH: oldest first)
-- ARGV: 1 review cutoff (ms), 2 audit cutoff (ms), 3 most items removed per list per call
-- Returns {review items removed, tenant audit records removed}.
-- Only an old run at the old end is removed; an item whose time cannot be read ends the
-- run (kept, never guessed at).
local review_cutoff, audit_cutoff = tonumber(ARGV[1]), tonumber(ARGV[2])
local budget = tonumber(ARGV[3])
local CHUNK = 64

-- Audit lines are '<event id>|<effect>|[<at_ms>,...]' or '[<at_ms>,...]'; review items and
-- other JSON objects carry '"at_ms": <int>' (inside a JSON string the quotes are escaped,
-- so only a real key matches).
local function at_of(line)
  return tonumber(string.match(line, '^[^|%[{]*|[^|]*|%[(%d+),')
    or string.match(line, '^%[(%d+),')
    or string.match(line, '"at_ms":%s*(%d+)'))
end

local function old_at_head(key, cutoff)
  local n = 0
  while n < budget do
    local want = math.min(CHUNK, budget - n)
    local chunk = redis.call('LRANGE', key, n, n + want - 1)
    for _, line in ipairs(chunk) do
      local at = at_of(line)
      if at == nil or at >= cutoff then return n end
      n = n + 1
    end
    if #chunk < want then return n end
  end
  return n
end

local function old_at_tail(key, cutoff)
  local n = 0
  while n < budget do
    local want = math.min(CHUNK, budget - n)
    local chunk = redis.call('LRANGE', key, -(n + want), -(n + 1))
    for i = #chunk, 1, -1 do
      local at = at_of(chunk[i])
      if at == nil or at >= cutoff then return n end
      n = n + 1
    end
    if #chunk < want then return n end
  end
  return n
end

local review = old_at_tail(KEYS[1], review_cutoff)
if review > 0 then redis.call('LTRIM', KEYS[1], 0, -(review + 1)) end
local audit = old_at_head(KEYS[2], audit_cutoff)
if audit > 0 then redis.call('LTRIM', KEYS[2], audit, -1) end
return {review, audit}
