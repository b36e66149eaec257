-- watch.lua: marks a job as watched, so every later change is appended to its event
-- stream, and returns its current state with the id of its latest event.
-- KEYS: the queue key set (lib.lua); uses job:, events:.
-- ARGV[1..3]: now override, wake channel, events channel (lib.lua)
-- ARGV[4]  seq of the job
-- Returns: {code, latest event id or "0-0", the job hash as a flat list}
-- Codes: 0 OK, 1 NOT_FOUND

local jk = K.job .. ARGV[4]
if redis.call('EXISTS', jk) == 0 then return {NOT_FOUND, '', {}} end
redis.call('HSET', jk, 'wt', '1')
local last = redis.call('XREVRANGE', K.events .. ARGV[4], '+', '-', 'COUNT', 1)
local last_id = last[1] and last[1][1] or '0-0'
return {OK, last_id, redis.call('HGETALL', jk)}
