-- complete.lua: finishes n leased jobs of one queue with their results.
-- KEYS: the queue key set (lib.lua); uses active, completed, job:, events:.
-- ARGV[1..3]: now override, wake channel, events channel (lib.lua)
-- ARGV[4]  n; then 4 ARGV per item: seq, token, result, result content type
-- Returns: per item {code, reason, trace context JSON ("" unless OK)}
-- Codes: 0 OK, 1 NOT_FOUND, 2 LEASE_LOST

local now = now_ms()
local out = {}
for i = 0, tonumber(ARGV[4]) - 1 do
  local a = 5 + i * 4
  local seq = ARGV[a]
  local code, reason, f = check_lease(seq, ARGV[a + 1], now, {'att', 'trace'})
  if code == OK then
    local jk = K.job .. seq
    redis.call('ZREM', K.active, seq)
    redis.call('HDEL', jk, 'token', 'lease_until', 'exec_until')
    redis.call('HSET', jk, 'state', 'completed', 'finished', now,
      'result', ARGV[a + 2], 'rctype', ARGV[a + 3])
    redis.call('ZADD', K.completed, now, seq)
    emit(seq, {'k', 'state', 's', 'completed', 'a', f[1]})
  end
  out[#out + 1] = {code, reason, f and f[2] or ''}
end
return out
