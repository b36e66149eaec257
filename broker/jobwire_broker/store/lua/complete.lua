-- complete.lua: finishes leased jobs of one queue with their results.
-- KEYS: the queue key set (lib.lua); uses active, completed, job:, events:, qevents,
--       stats:, worker:;
--       for dependants (lib.lua resolve_dependants): dependants:, blocked, resolve,
--       and the key sets of the dependants' other queues (ARGV[5]).
-- ARGS: list of {seq, token, result, result_content_type}
-- A retry with the token of the job's last Complete, within lib.lua's REPLAY_MS, is OK
-- again and writes nothing (its trace is empty: the first call recorded the span).
-- Returns: list of {code, reason, trace (the job's trace context members, when OK)}
-- Codes: 0 OK, 1 NOT_FOUND, 2 LEASE_LOST

local now = now_ms()
local out = {}
for _, item in ipairs(ARGS) do
  local seq = tostring(item.seq)
  local code, reason, f = check_lease(seq, item.token, now,
    {'attempt', 'traceparent', 'tracestate', 'baggage', 'worker_id'})
  if replayed(code, seq, item.token, 'complete', now) then
    code, reason, f = OK, '', nil  -- a retry whose first reply was lost: done already
  elseif code == OK then
    worker_done(f.worker_id, now, false)
    tally('completed')
    leave_active(seq)
    redis.call('HDEL', K.job .. seq, J.token, J.lease_until_ms, J.exec_until_ms)
    set(seq, {[J.state] = 'completed', [J.finished_ms] = now, [J.result] = item.result,
      [J.result_content_type] = item.result_content_type})
    redis.call('ZADD', K.completed, now, seq)
    emit(seq, {[E.kind] = 'state', [E.state] = 'completed', [E.attempt] = f.attempt})
    job_event('completed', seq, 'completed', f.attempt)
    resolve_dependants(seq, 'completed', now)
    remember_settlement(seq, item.token, 'complete', now, 'completed', 0)
  end
  out[#out + 1] = {code = code, reason = reason, trace = f and trace_of(f) or {}}
end
return finish(out, now)
