-- prune.lua: applies retention to finished jobs: deletes completed, dead, cancelled and
-- expired jobs older than their maximum age or beyond their maximum count, with their
-- events.
-- The queue's settings (keep_completed, completed_max_age_ms, keep_dead,
-- dead_max_age_ms) win over the broker's defaults given here.
-- KEYS: the queue key set (lib.lua); uses completed, dead, cancelled, expired, job:,
--       events:, idem:, settings, deadlines, dlgroups, dlg:, dlgmeta:;
--       for dependants (lib.lua resolve_dependants): dependants:, blocked, resolve,
--       and the key sets of the dependants' other queues (ARGV[5]).
-- ARGS: {completed_age_ms, completed_count (completed, cancelled and expired jobs, each
--        set on its own: the most age and count kept), dead_age_ms, dead_count,
--        limit (the most jobs to delete in this call, all sets together)}
-- Returns: {deleted = the number of jobs deleted}
-- Codes: 0 OK

local now = now_ms()
local left = ARGS.limit

local function setting(name, default)
  return tonumber(redis.call('HGET', K.settings, name) or default)
end

local function prune(state, max_age, max_count)
  if left <= 0 then return 0 end
  local set = K[state]
  local old = redis.call('ZRANGEBYSCORE', set, '-inf', now - max_age, 'LIMIT', 0, left)
  local excess = redis.call('ZCARD', set) - #old - max_count
  if excess > 0 and #old < left then
    local extra = redis.call('ZRANGE', set, #old, #old + math.min(excess, left - #old) - 1)
    for _, seq in ipairs(extra) do old[#old + 1] = seq end
  end
  for _, seq in ipairs(old) do remove_job(seq, state) end
  left = left - #old
  return #old
end

local completed_age = setting(S.completed_max_age_ms, ARGS.completed_age_ms)
local completed_count = setting(S.keep_completed, ARGS.completed_count)
local deleted = prune('completed', completed_age, completed_count)
  + prune('cancelled', completed_age, completed_count)
  + prune('expired', completed_age, completed_count)
  + prune('dead', setting(S.dead_max_age_ms, ARGS.dead_age_ms),
    setting(S.keep_dead, ARGS.dead_count))
return finish({deleted = deleted}, now)
