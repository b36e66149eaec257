-- resolve.lua: the maintenance step of dependencies: resolves the dependants that the
-- scripts finishing their dependencies left for later (more than lib.lua's
-- RESOLVE_PER_CALL, or in queues whose keys they did not have), at most
-- RESOLVE_PER_CALL per call, cascades included.
-- KEYS: the queue key set (lib.lua), then the key sets of the dependants' queues (ARGV[5]);
--       uses resolve, dependants:, blocked, ready, scheduled, dead, job:, events:,
--       qevents, waiting, dlgroups, dlg:, dlgmeta:.
-- ARGS: {limit = the most `resolve` entries to look at}
-- Returns: {resolved = dependants resolved, left = entries still in `resolve`}
-- Codes: 0 OK

local now = now_ms()
local entries = redis.call('ZRANGE', K.resolve, 0, ARGS.limit - 1)
for _, entry in ipairs(entries) do
  if resolve_left <= 0 then break end
  local seq, outcome = string.match(entry, '^([^|]+)|(.+)$')
  if seq then
    resolve_dependants(seq, outcome, now)
  else
    redis.call('ZREM', K.resolve, entry)
  end
end
return finish({resolved = RESOLVE_PER_CALL - resolve_left,
  left = redis.call('ZCARD', K.resolve)}, now)
