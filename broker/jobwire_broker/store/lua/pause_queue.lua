-- pause_queue.lua: pauses (or resumes) a queue. Paused, lease.lua hands out nothing;
-- resuming wakes every long-polling Lease of the queue, on every replica, at once.
-- KEYS: the queue key set (lib.lua); uses paused, waiting, qevents.
-- ARGS: {paused = true to pause, false to resume}
-- Returns: {changed = false when the queue already was as asked}
-- Codes: 0 OK

local now = now_ms()
local was = redis.call('EXISTS', K.paused) == 1
if ARGS.paused == was then return finish({changed = false}, now) end
if ARGS.paused then
  redis.call('SET', K.paused, '1')
  qevent({[QE.kind] = 'paused'})
else
  redis.call('DEL', K.paused, K.waiting)
  redis.call('PUBLISH', K.wake_channel, '1')
  qevent({[QE.kind] = 'resumed'})
end
return finish({changed = true}, now)
