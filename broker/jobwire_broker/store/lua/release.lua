-- release.lua: hands leases back uncounted: the job is ready again (or scheduled after
-- delay_ms) and `releases` grows, so the attempts that count against max_attempts
-- (attempt - releases) stay as they were, while `attempt`, the fencing number, keeps
-- growing with each lease. No error is recorded.
-- KEYS: the queue key set (lib.lua); uses ready, scheduled, active, waiting, job:, events:,
--       qevents, worker:.
-- ARGS: list of {seq, token, delay_ms}
-- A retry with the token of the job's last ReleaseLease, within lib.lua's REPLAY_MS,
-- gets its state and due_ms again and writes nothing.
-- Returns: list of {code, reason, state (after; "" unless OK), due_ms,
--          trace (the job's trace context members, when OK)}, in order
-- Codes: 0 OK, 1 NOT_FOUND, 2 LEASE_LOST

local now = now_ms()
local out = {}
for _, item in ipairs(ARGS) do
  local seq = tostring(item.seq)
  local code, reason, f = check_lease(seq, item.token, now,
    {'traceparent', 'tracestate', 'baggage'})
  local again, again_due = replayed(code, seq, item.token, 'release', now)
  if again then  -- a retry whose first reply was lost: its outcome, nothing written
    out[#out + 1] = {code = OK, reason = '', state = again, due_ms = again_due, trace = {}}
  elseif code ~= OK then
    out[#out + 1] = {code = code, reason = reason, state = '', due_ms = 0, trace = {}}
  else
    local state, due = hand_back(seq, now, item.delay_ms)  -- lib.lua: shared with Fail
    remember_settlement(seq, item.token, 'release', now, state, due)
    out[#out + 1] = {code = code, reason = reason, state = state, due_ms = due,
      trace = trace_of(f)}
  end
end
return finish(out, now)
