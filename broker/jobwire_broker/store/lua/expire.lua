-- expire.lua: drops pending jobs whose start deadline has passed (JobSpec.start_deadline):
-- each ends expired without running. The maintenance loop calls it, so an overdue job
-- does not sit as ready until a Lease comes by; lease.lua checks the deadline itself too.
-- Entries of jobs no longer pending (leased since, or gone) are dropped from the set.
-- KEYS: the queue key set (lib.lua); uses ready, scheduled, blocked, expired, deadlines,
--       job:, events:, qevents, dependants:, resolve.
-- ARGS: {limit = the most deadline entries to look at (and jobs to expire) in this call}
-- Returns: {expired = jobs expired, examined = deadline entries looked at}
-- Codes: 0 OK

local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', K.deadlines, '-inf', now, 'LIMIT', 0, ARGS.limit)
local expired = 0
for _, seq in ipairs(due) do
  local state = redis.call('HGET', K.job .. seq, J.state)
  if state == 'ready' or state == 'scheduled' or state == 'waiting' then
    expire_job(seq, state, now)
    expired = expired + 1
  else
    redis.call('ZREM', K.deadlines, seq)
  end
end
return finish({expired = expired, examined = #due}, now)
