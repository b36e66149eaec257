-- prune.lua: applies retention to finished jobs: deletes completed, dead and cancelled
-- jobs older than their maximum age or beyond their maximum count, with their events.
-- KEYS: the queue key set (lib.lua); uses completed, dead, cancelled, job:, events:.
-- ARGV[1..3]: now override, wake channel, events channel (lib.lua)
-- ARGV[4]  completed (and cancelled) jobs: max age ms;  ARGV[5] max count
-- ARGV[6]  dead jobs: max age ms;  ARGV[7] max count
-- ARGV[8]  the most jobs to delete per set in this call
-- Returns: the number of jobs deleted
-- Codes: 0 OK

local now = now_ms()
local limit = tonumber(ARGV[8])

local function prune(set, max_age, max_count)
  local old = redis.call('ZRANGEBYSCORE', set, '-inf', now - max_age, 'LIMIT', 0, limit)
  local excess = redis.call('ZCARD', set) - #old - max_count
  if excess > 0 then
    local extra = redis.call('ZRANGE', set, #old, #old + math.min(excess, limit) - 1)
    for _, seq in ipairs(extra) do old[#old + 1] = seq end
  end
  for _, seq in ipairs(old) do
    redis.call('ZREM', set, seq)
    redis.call('DEL', K.job .. seq, K.events .. seq)
  end
  return #old
end

return prune(K.completed, tonumber(ARGV[4]), tonumber(ARGV[5]))
  + prune(K.cancelled, tonumber(ARGV[4]), tonumber(ARGV[5]))
  + prune(K.dead, tonumber(ARGV[6]), tonumber(ARGV[7]))
