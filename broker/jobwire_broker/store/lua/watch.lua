-- watch.lua: marks a job as watched, so every later change is appended to its event
-- stream, and returns its current state with the id of its latest event.
-- KEYS: the queue key set (lib.lua); uses job:, events:.
-- ARGS: {seq = the job's}
-- Returns: {code, last_event_id (or "0-0"), job (its hash as a flat list; empty when
--          not found)}
-- Codes: 0 OK, 1 NOT_FOUND

local seq = tostring(ARGS.seq)
local jk = K.job .. seq
if redis.call('EXISTS', jk) == 0 then
  return finish({code = NOT_FOUND, last_event_id = '', job = {}}, 0)
end
set(seq, {[J.watched] = '1'})
local last = redis.call('XREVRANGE', K.events .. seq, '+', '-', 'COUNT', 1)
local last_id = last[1] and last[1][1] or '0-0'
return finish({code = OK, last_event_id = last_id, job = redis.call("HGETALL", jk)}, 0)
