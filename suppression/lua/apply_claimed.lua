-- An opt-out or opt-in applied together with its claims, in one call: the inbound STOP path.
-- The apply itself is apply_event.lua, inlined verbatim below by the store (one rule, one
-- place), with its own KEYS and ARGV first. The claims come last, so apply_event.lua may
-- grow arguments without clashing:
--   ARGV[#ARGV - 1] dedupe TTL in s, or '' for none: then a key after apply_event.lua's is
--     the provider message id's idempotency key; if it is held, nothing is applied (a retry);
--   ARGV[#ARGV] confirmation gap in s, or '' for none: then the last key is the confirmation
--     key, taken only when the event is not a retry.
-- Claims are SET NX with a TTL, in the identifier's shard (one cluster slot).
-- Returns {apply result (1, 0, -1 as apply_event.lua; -2 = a retry, nothing done),
--          1 if the confirmation claim was taken else 0}.
local function apply_event()
--@apply_event.lua@
end

local eid = ARGV[4]
local dedupe_ttl, confirm_gap = ARGV[#ARGV - 1], ARGV[#ARGV]
local confirm_key = nil
local dedupe_key = nil
if confirm_gap ~= '' then confirm_key = KEYS[#KEYS] end
if dedupe_ttl ~= '' then
  dedupe_key = KEYS[#KEYS - (confirm_key and 1 or 0)]
  -- The value names the event that claimed the message id: ops can trace a retry to it.
  if not redis.call('SET', dedupe_key, eid, 'NX', 'EX', dedupe_ttl) then
    return {-2, 0}
  end
end
local result = apply_event()
local confirm = 0
if confirm_key and redis.call('SET', confirm_key, eid, 'NX', 'EX', confirm_gap) then
  confirm = 1
end
return {result, confirm}
