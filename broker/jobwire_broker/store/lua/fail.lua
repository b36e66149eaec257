-- fail.lua: ends n failed attempts of one queue: retry after backoff, or dead.
-- A job whose cancellation was requested ends cancelled instead.
-- KEYS: the queue key set (lib.lua); uses ready, scheduled, active, dead, cancelled,
--       waiting, job:, events:.
-- ARGV[1..3]: now override, wake channel, events channel (lib.lua)
-- ARGV[4]  n; then 8 ARGV per item: seq, token, error type, error message,
--          non-retryable (0/1), retry delay ms (-1: the job's backoff policy),
--          random number in [0, 1) for jitter, release (0/1: hand back uncounted)
-- Returns: per item {code, reason, new state, due time ms (0 unless retried),
--          trace context JSON ("" unless OK)}
-- Codes: 0 OK, 1 NOT_FOUND, 2 LEASE_LOST

-- Gives a leased job back uncounted: 'rel' grows, so the attempts that count against
-- max_attempts (att - rel) stay as they were, while 'att', the fencing number, keeps
-- growing with each lease.
local function release(seq, now, delay)
  local jk = K.job .. seq
  redis.call('ZREM', K.active, seq)
  redis.call('HDEL', jk, 'token', 'lease_until', 'exec_until')
  redis.call('HINCRBY', jk, 'rel', 1)
  local attempt = redis.call('HGET', jk, 'att')
  local due = now + math.max(delay, 0)
  redis.call('HSET', jk, 'run_at', due)
  if due > now then
    redis.call('ZADD', K.scheduled, due, seq)
    redis.call('HSET', jk, 'state', 'scheduled')
  else
    make_ready(seq, redis.call('HGET', jk, 'prio'))
    wake()
  end
  local state = due > now and 'scheduled' or 'ready'
  emit(seq, {'k', 'state', 's', state, 'a', attempt})
  return state, due
end

local now = now_ms()
local out = {}
for i = 0, tonumber(ARGV[4]) - 1 do
  local a = 5 + i * 8
  local seq = ARGV[a]
  local code, reason, f = check_lease(seq, ARGV[a + 1], now, {'trace'})
  if code ~= OK then
    out[#out + 1] = {code, reason, '', 0, ''}
  elseif ARGV[a + 7] == '1' then
    local state, due = release(seq, now, tonumber(ARGV[a + 5]))
    out[#out + 1] = {code, reason, state, due, f[1] or ''}
  else
    local state, due = settle_failure(seq, now, ARGV[a + 2], ARGV[a + 3],
      ARGV[a + 4] == '1', tonumber(ARGV[a + 5]), tonumber(ARGV[a + 6]))
    out[#out + 1] = {code, reason, state, due, f[1] or ''}
  end
end
return out
