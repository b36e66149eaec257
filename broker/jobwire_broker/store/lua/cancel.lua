-- cancel.lua: cancels a scheduled, ready or waiting job at once; flags an active one so its
-- worker learns it from the next heartbeat. Cancelling a cancelled job is a no-op.
-- KEYS: the queue key set (lib.lua); uses ready, scheduled, cancelled, job:, events:,
--       qevents, deadlines;
--       for dependants (lib.lua resolve_dependants): dependants:, blocked, resolve,
--       and the key sets of the dependants' other queues (ARGV[5]).
-- ARGS: {seq = the job's}
-- Returns: {code, state (after the call; "" when not found)}
-- Codes: 0 OK, 1 NOT_FOUND, 3 JOB_FINISHED

local now = now_ms()
local seq = tostring(ARGS.seq)
local f = fields(seq, {'state', 'attempt', 'cancel_requested'})
local state = f.state
if not state then return finish({code = NOT_FOUND, state = ''}, now) end
if state == 'completed' or state == 'dead' or state == 'expired' then
  return finish({code = JOB_FINISHED, state = state}, now)
end
if state == 'scheduled' or state == 'ready' or state == 'waiting' then
  leave_state(seq, state)
  redis.call('ZREM', K.deadlines, seq)
  redis.call('ZADD', K.cancelled, now, seq)
  set(seq, {[J.state] = 'cancelled', [J.finished_ms] = now})
  emit(seq, {[E.kind] = 'state', [E.state] = 'cancelled', [E.attempt] = f.attempt})
  job_event('cancelled', seq, 'cancelled', f.attempt)
  resolve_dependants(seq, 'cancelled', now)
  return finish({code = OK, state = 'cancelled'}, now)
end
if state == 'active' and f.cancel_requested ~= '1' then
  set(seq, {[J.cancel_requested] = '1'})
  emit(seq, {[E.kind] = 'cancel', [E.state] = 'active', [E.attempt] = f.attempt})
  job_event('cancel_requested', seq, 'active', f.attempt)
end
return finish({code = OK, state = state}, now)
