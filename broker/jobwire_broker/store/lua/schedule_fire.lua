-- schedule_fire.lua: claims a schedule's due ticks and enqueues their jobs, in one call.
-- A claim holds only while the record is as the broker read it (same version, same
-- cursor: the time up to which its ticks are handled), so a tick that another replica
-- claimed first, or a schedule changed meanwhile, fires nothing: every tick fires once.
-- The jobs go in through enqueue.lua's own body (run_enqueue, see scripts.py CALLS).
-- KEYS: the queue key set (lib.lua); uses schedules, schedule:, job:, and what
--       enqueue.lua uses.
-- ARGS: {name, version, cursor_ms (both as read), new_cursor_ms, next_due_ms (-1: none),
--        skip_overlap (bool: OVERLAP_POLICY_SKIP), ticks = the tick times (ms) of `jobs`,
--        oldest first, last_tick_ms (the latest of them; 0 if none),
--        queue, defaults, jobs (as enqueue.lua takes them, one per tick, no idempotency key)}
-- Returns: {claimed (bool), fired = list of {tick_ms, seq}, skipped (ticks skipped by the
--           overlap policy)}
-- Codes: 0 OK

local rec = K.schedule .. ARGS.name
local f = redis.call('HMGET', rec, SC.version, SC.cursor_ms, SC.paused, SC.last_job_id)
if not f[1] or tonumber(f[1]) ~= ARGS.version or tonumber(f[2]) ~= ARGS.cursor_ms
    or f[3] == '1' then
  return cmsgpack.pack({claimed = false, fired = {}, skipped = 0})
end

local TERMINAL = {completed = true, dead = true, cancelled = true, expired = true}
local jobs, skipped = ARGS.jobs, 0
if ARGS.skip_overlap and #jobs > 0 then
  -- Only the oldest may fire: each later tick would find it pending.
  local busy = false
  local queue, seq = string.match(f[4] or '', '^(.*):(%d+)$')
  if queue == ARGS.queue then
    local state = redis.call('HGET', K.job .. seq, J.state)
    busy = state ~= false and not TERMINAL[state]
  end
  if busy then
    skipped, jobs = #jobs, {}
  else
    skipped, jobs = #jobs - 1, {jobs[1]}
  end
end

local fired = {}
if #jobs > 0 then
  ARGS.jobs = jobs
  local out = cmsgpack.unpack(run_enqueue())
  if out.invalid or out.missing then  -- a start deadline passed meanwhile: retry later
    return cmsgpack.pack({claimed = false, fired = {}, skipped = 0})
  end
  for i, row in ipairs(out) do fired[i] = {tick_ms = ARGS.ticks[i], seq = row.seq} end
  redis.call('HSET', rec, SC.last_job_id, ARGS.queue .. ':' .. out[#out].seq)
end
redis.call('HSET', rec, SC.cursor_ms, ARGS.new_cursor_ms)
if ARGS.last_tick_ms > 0 then redis.call('HSET', rec, SC.last_tick_ms, ARGS.last_tick_ms) end
if ARGS.next_due_ms >= 0 then
  redis.call('ZADD', K.schedules, ARGS.next_due_ms, ARGS.name)
else
  redis.call('ZREM', K.schedules, ARGS.name)
end
return cmsgpack.pack({claimed = true, fired = fired, skipped = skipped})
