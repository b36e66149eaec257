-- heartbeat.lua: extends live leases and records progress, for jobs of one queue.
-- A lease never extends past the job's execution timeout; a lease already expired
-- (even if not yet reclaimed) is lost.
-- KEYS: the queue key set (lib.lua); uses active, job:, events:, qevents, workers,
--       worker:.
-- ARGS: list of {seq, token, extension_ms (0: the job's lease), progress (model.Progress's
--        members, encoded: {percent, message, details_json}), or absent}
-- Returns: list of {code, reason, lease_until_ms, cancel_requested (bool)}, in order
-- Codes: 0 OK, 1 NOT_FOUND, 2 LEASE_LOST

local now = now_ms()
local out = {}
for _, item in ipairs(ARGS) do
  local seq = tostring(item.seq)
  local code, reason, f = check_lease(seq, item.token, now,
    {'lease_ms', 'exec_until_ms', 'cancel_requested', 'attempt', 'worker_id'})
  if code ~= OK then
    out[#out + 1] = {code = code, reason = reason, lease_until_ms = 0, cancel_requested = false}
  else
    local extension = item.extension_ms
    if extension <= 0 then extension = tonumber(f.lease_ms) end
    local deadline = now + extension
    local exec_until = tonumber(f.exec_until_ms)
    if exec_until > 0 and deadline > exec_until then deadline = exec_until end
    set(seq, {[J.lease_until_ms] = deadline})
    worker_heard(f.worker_id, now)
    redis.call('ZADD', K.active, deadline, seq)
    if item.progress then
      set(seq, record(item.progress, PROGRESS, 1, {}))
      emit(seq, record(item.progress, PROGRESS, 2,
        {[E.kind] = 'progress', [E.state] = 'active', [E.attempt] = f.attempt}))
      qevent(record(item.progress, PROGRESS, 2, {[QE.kind] = 'progress', [QE.job] = seq,
        [QE.state] = 'active', [QE.attempt] = f.attempt}))
    end
    out[#out + 1] = {code = OK, reason = '', lease_until_ms = deadline,
      cancel_requested = f.cancel_requested == '1'}
  end
end
return finish(out, now)
