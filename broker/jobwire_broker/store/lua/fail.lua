-- fail.lua: ends n failed attempts of one queue: retry after backoff, or dead.
-- A job whose cancellation was requested ends cancelled instead.
-- KEYS: the queue key set (lib.lua); uses ready, scheduled, active, dead, cancelled,
--       waiting, job:, events:.
-- ARGV[1..3]: now override, wake channel, events channel (lib.lua)
-- ARGV[4]  n; then 7 ARGV per item: seq, token, error type, error message,
--          non-retryable (0/1), retry delay ms (-1: the job's backoff policy),
--          random number in [0, 1) for jitter
-- Returns: per item {code, reason, new state, due time ms (0 unless retried)}
-- Codes: 0 OK, 1 NOT_FOUND, 2 LEASE_LOST

local now = now_ms()
local out = {}
for i = 0, tonumber(ARGV[4]) - 1 do
  local a = 5 + i * 7
  local seq = ARGV[a]
  local code, reason = check_lease(seq, ARGV[a + 1], now, {})
  if code == OK then
    local state, due = settle_failure(seq, now, ARGV[a + 2], ARGV[a + 3],
      ARGV[a + 4] == '1', tonumber(ARGV[a + 5]), tonumber(ARGV[a + 6]))
    out[#out + 1] = {code, reason, state, due}
  else
    out[#out + 1] = {code, reason, '', 0}
  end
end
return out
