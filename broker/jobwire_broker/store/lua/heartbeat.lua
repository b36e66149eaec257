-- heartbeat.lua: extends live leases and records progress, for n jobs of one queue.
-- A lease never extends past the job's execution timeout; a lease already expired
-- (even if not yet reclaimed) is lost.
-- KEYS: the queue key set (lib.lua); uses active, job:, events:.
-- ARGV[1..3]: now override, wake channel, events channel (lib.lua)
-- ARGV[4]  n; then 7 ARGV per item: seq, token, extension ms (0: the job's lease),
--          has progress (0/1), percent, message, details (JSON)
-- Returns: per item {code, reason, new deadline ms, cancel requested (0/1)}
-- Codes: 0 OK, 1 NOT_FOUND, 2 LEASE_LOST

local now = now_ms()
local out = {}
for i = 0, tonumber(ARGV[4]) - 1 do
  local a = 5 + i * 7
  local seq = ARGV[a]
  local code, reason, f = check_lease(seq, ARGV[a + 1], now,
    {'lease_ms', 'exec_until', 'cancel', 'att'})
  if code ~= OK then
    out[#out + 1] = {code, reason, 0, 0}
  else
    local extension = tonumber(ARGV[a + 2])
    if extension <= 0 then extension = tonumber(f[1]) end
    local deadline = now + extension
    local exec_until = tonumber(f[2])
    if exec_until > 0 and deadline > exec_until then deadline = exec_until end
    local jk = K.job .. seq
    redis.call('HSET', jk, 'lease_until', deadline)
    redis.call('ZADD', K.active, deadline, seq)
    if ARGV[a + 3] == '1' then
      redis.call('HSET', jk, 'pct', ARGV[a + 4], 'pmsg', ARGV[a + 5], 'pdet', ARGV[a + 6])
      emit(seq, {'k', 'progress', 's', 'active', 'a', f[4],
        'pp', ARGV[a + 4], 'pm', ARGV[a + 5], 'pd', ARGV[a + 6]})
    end
    out[#out + 1] = {OK, '', deadline, f[3] == '1' and 1 or 0}
  end
end
return out
