-- reclaim.lua: takes back leases whose deadline has passed; each counts as a failed
-- attempt (LEASE_EXPIRED, or EXECUTION_TIMEOUT past the job's execution timeout) and
-- is retried or dead-lettered like a Fail. Safe to run from every replica at once.
-- KEYS: the queue key set (lib.lua); uses ready, scheduled, active, dead, cancelled,
--       waiting, job:, events:, qevents, stats:, worker:, dlgroups, dlg:, dlgmeta:;
--       for dependants (lib.lua resolve_dependants): dependants:, blocked, resolve,
--       and the key sets of the dependants' other queues (ARGV[5]).
-- ARGS: {limit (the most leases to take back in this call), rand (in [0, 1), jitter),
--        errors = {LEASE_EXPIRED = {message, fingerprint, template}, EXECUTION_TIMEOUT =
--        ...}: the two errors this script records}
-- Returns: list of {seq, state (after), error_type, attempt, trace (members)}, one per
--          lease taken back, so the broker can record each in the job's trace
-- Codes: 0 OK

local now = now_ms()
local expired = redis.call('ZRANGEBYSCORE', K.active, '-inf', now, 'LIMIT', 0, ARGS.limit)
local rand = ARGS.rand
local out = {}
for _, seq in ipairs(expired) do
  local f = fields(seq, {'exec_until_ms', 'attempt', 'traceparent', 'tracestate', 'baggage'})
  local exec_until = tonumber(f.exec_until_ms or '0')
  local etype = 'LEASE_EXPIRED'
  if exec_until > 0 and exec_until <= now then etype = 'EXECUTION_TIMEOUT' end
  local e = ARGS.errors[etype]
  local err = {type = etype, message = e.message, non_retryable = '0',
    fingerprint = e.fingerprint, template = e.template}
  local state = settle_failure(seq, now, err, -1, rand, true)
  rand = (rand + 0.6180339887) % 1
  out[#out + 1] = {seq = tonumber(seq), state = state, error_type = etype,
    attempt = tonumber(f.attempt or '0'), trace = trace_of(f)}
end
return finish(out, now)
