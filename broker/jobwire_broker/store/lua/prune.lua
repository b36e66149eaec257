-- prune.lua: applies retention to finished jobs: deletes completed, dead and cancelled
-- jobs older than their maximum age or beyond their maximum count, with their events.
-- KEYS: the queue key set (lib.lua); uses completed, dead, cancelled, job:, events:.
-- ARGS: {completed_age_ms, completed_count (completed and cancelled jobs: the most age
--        and count kept), dead_age_ms, dead_count, limit (the most jobs to delete per
--        set in this call)}
-- Returns: {deleted = the number of jobs deleted}
-- Codes: 0 OK

local now = now_ms()
local limit = ARGS.limit

local function prune(set, max_age, max_count)
  local old = redis.call('ZRANGEBYSCORE', set, '-inf', now - max_age, 'LIMIT', 0, limit)
  local excess = redis.call('ZCARD', set) - #old - max_count
  if excess > 0 then
    local extra = redis.call('ZRANGE', set, #old, #old + math.min(excess, limit) - 1)
    for _, seq in ipairs(extra) do old[#old + 1] = seq end
  end
  for _, seq in ipairs(old) do
    redis.call('ZREM', set, seq)
    redis.call('DEL', K.job .. seq, K.events .. seq)
  end
  return #old
end

local deleted = prune(K.completed, ARGS.completed_age_ms, ARGS.completed_count)
  + prune(K.cancelled, ARGS.completed_age_ms, ARGS.completed_count)
  + prune(K.dead, ARGS.dead_age_ms, ARGS.dead_count)
return cmsgpack.pack({deleted = deleted})
