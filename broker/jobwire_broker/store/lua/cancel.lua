-- cancel.lua: cancels a scheduled or ready job at once; flags an active one so its
-- worker learns it from the next heartbeat. Cancelling a cancelled job is a no-op.
-- KEYS: the queue key set (lib.lua); uses ready, scheduled, cancelled, job:, events:.
-- ARGV[1..3]: now override, wake channel, events channel (lib.lua)
-- ARGV[4]  seq of the job
-- Returns: {code, state after the call}
-- Codes: 0 OK, 1 NOT_FOUND, 3 JOB_FINISHED

local now = now_ms()
local seq = ARGV[4]
local jk = K.job .. seq
local f = redis.call('HMGET', jk, 'state', 'att')
local state = f[1]
if not state then return {NOT_FOUND, ''} end
if state == 'completed' or state == 'dead' then return {JOB_FINISHED, state} end
if state == 'scheduled' or state == 'ready' then
  redis.call('ZREM', K[state], seq)
  redis.call('ZADD', K.cancelled, now, seq)
  redis.call('HSET', jk, 'state', 'cancelled', 'finished', now)
  emit(seq, {'k', 'state', 's', 'cancelled', 'a', f[2]})
  return {OK, 'cancelled'}
end
if state == 'active' and redis.call('HGET', jk, 'cancel') ~= '1' then
  redis.call('HSET', jk, 'cancel', '1')
  emit(seq, {'k', 'cancel', 's', 'active', 'a', f[2]})
end
return {OK, state}
