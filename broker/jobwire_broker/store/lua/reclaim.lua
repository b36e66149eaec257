-- reclaim.lua: takes back leases whose deadline has passed; each counts as a failed
-- attempt (LEASE_EXPIRED, or EXECUTION_TIMEOUT past the job's execution timeout) and
-- is retried or dead-lettered like a Fail. Safe to run from every replica at once.
-- KEYS: the queue key set (lib.lua); uses ready, scheduled, active, dead, cancelled,
--       waiting, job:, events:.
-- ARGV[1..3]: now override, wake channel, events channel (lib.lua)
-- ARGV[4]  the most leases to take back in this call
-- ARGV[5]  random number in [0, 1) for jitter
-- Returns: per lease taken back {seq, new state, error type, attempt, trace context
--          JSON}, so the broker can record each in the job's trace
-- Codes: 0 OK

local now = now_ms()
local expired = redis.call('ZRANGEBYSCORE', K.active, '-inf', now, 'LIMIT', 0, tonumber(ARGV[4]))
local rand = tonumber(ARGV[5])
local out = {}
for _, seq in ipairs(expired) do
  local f = redis.call('HMGET', K.job .. seq, 'exec_until', 'att', 'trace')
  local exec_until = tonumber(f[1] or '0')
  local etype, emsg = 'LEASE_EXPIRED', 'lease expired without a heartbeat'
  if exec_until > 0 and exec_until <= now then
    etype, emsg = 'EXECUTION_TIMEOUT', 'attempt ran past its execution timeout'
  end
  local state = settle_failure(seq, now, etype, emsg, false, -1, rand)
  rand = (rand + 0.6180339887) % 1
  out[#out + 1] = {tonumber(seq), state, etype, tonumber(f[2] or '0'), f[3] or ''}
end
return out
