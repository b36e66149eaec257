-- prune_workers.lua: forgets workers of a queue not seen (no Lease, no heartbeat) for
-- longer than max_age_ms: their entry in `workers` and their record. A worker that
-- calls again later starts a new record.
-- KEYS: the queue key set (lib.lua); uses workers, worker:.
-- ARGS: {max_age_ms, limit (the most workers to forget in this call)}
-- Returns: {deleted = the number of workers forgotten}
-- Codes: 0 OK

local now = now_ms()
local old = redis.call('ZRANGEBYSCORE', K.workers, '-inf', '(' .. (now - ARGS.max_age_ms),
  'LIMIT', 0, ARGS.limit)
for _, id in ipairs(old) do
  redis.call('ZREM', K.workers, id)
  redis.call('DEL', K.worker .. id)
end
return finish({deleted = #old}, now)
