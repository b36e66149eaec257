-- fail.lua: ends failed attempts of one queue: retry after backoff, or dead. A job
-- whose cancellation was requested ends cancelled instead.
-- KEYS: the queue key set (lib.lua); uses ready, scheduled, active, dead, cancelled,
--       waiting, job:, events:, qevents, stats:, worker:, dlgroups, dlg:, dlgmeta:;
--       for dependants (lib.lua resolve_dependants): dependants:, blocked, resolve,
--       and the key sets of the dependants' other queues (ARGV[5]).
-- ARGS: list of {seq, token, error (model.JobError's members, encoded: {type, message,
--        non_retryable, fingerprint}, plus template: the message's fingerprint template),
--        retry_delay_ms (-1: the job's backoff policy),
--        rand (in [0, 1), for jitter),
--        rate_limit_delay_ms (absent or 0: an ordinary failure; else the downstream
--        is rate limiting: the lease is handed back as release.lua does, the error
--        kept when its type is set, and the job's concurrency key (its queue, for a
--        job without one) held back that long)}
-- A retry with the token of the job's last Fail, within lib.lua's REPLAY_MS, gets that
-- Fail's state and due_ms again and writes nothing (its trace is empty).
-- Returns: list of {code, reason, state (after; "" unless OK), due_ms (0 unless
--          retried), trace (the job's trace context members, when OK)}, in order
-- Codes: 0 OK, 1 NOT_FOUND, 2 LEASE_LOST

local now = now_ms()
local out = {}
for _, item in ipairs(ARGS) do
  local seq = tostring(item.seq)
  local code, reason, f = check_lease(seq, item.token, now,
    {'traceparent', 'tracestate', 'baggage'})
  local again, again_due = replayed(code, seq, item.token, 'fail', now)
  if again then  -- a retry whose first reply was lost: its outcome, nothing written
    out[#out + 1] = {code = OK, reason = '', state = again, due_ms = again_due, trace = {}}
  elseif code ~= OK then
    out[#out + 1] = {code = code, reason = reason, state = '', due_ms = 0, trace = {}}
  elseif (item.rate_limit_delay_ms or 0) > 0 then
    if item.error.type and item.error.type ~= '' then set(seq, record(item.error, ERROR, 1, {})) end
    hold_back(seq, now, item.rate_limit_delay_ms)
    local state, due = hand_back(seq, now, item.rate_limit_delay_ms)
    remember_settlement(seq, item.token, 'fail', now, state, due)
    out[#out + 1] = {code = code, reason = reason, state = state, due_ms = due,
      trace = trace_of(f)}
  else
    local state, due = settle_failure(seq, now, item.error, item.retry_delay_ms, item.rand)
    remember_settlement(seq, item.token, 'fail', now, state, due)
    out[#out + 1] = {code = code, reason = reason, state = state, due_ms = due,
      trace = trace_of(f)}
  end
end
return finish(out, now)
