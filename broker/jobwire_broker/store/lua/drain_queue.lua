-- drain_queue.lua: deletes up to `limit` jobs of the given states (ready and scheduled
-- for DrainQueue; every state for DeleteQueue), with their events, dead-letter entries
-- and idempotency keys. Called again until it deletes nothing.
-- KEYS: the queue key set (lib.lua); uses the state sets, job:, events:, idem:,
--       dlgroups, dlg:, dlgmeta:, qevents, workers, worker:, settings, paused, waiting,
--       stats:;
--       for dependants (lib.lua resolve_dependants): dependants:, blocked, resolve,
--       and the key sets of the dependants' other queues (ARGV[5]).
-- ARGS: {states = list of state names, limit, all_keys (true: once the states are
--        empty, also delete the queue's other keys: settings, paused, events, workers,
--        throughput), idle (true: delete only while no job is active; the first call
--        pauses the queue so that none is leased meanwhile), was_paused (with idle,
--        from the first call's reply; absent in the first call)}
-- Returns: {deleted = jobs deleted in this call, done = true when nothing is left,
--           active = with idle, the active jobs when there are any (then nothing was
--           deleted, and the pause of the first call is undone),
--           was_paused = with idle, whether the queue was paused before the first call}
-- Codes: 0 OK

local now = now_ms()

-- Without force, a job leased between two batches must not be deleted under its worker:
-- every batch checks for active jobs in the same script that deletes. The first batch
-- pauses the queue, so only a ResumeQueue meanwhile lets a job be leased; refused, a
-- batch undoes that pause (and only that one).
if ARGS.idle then
  local first = ARGS.was_paused == nil
  local was_paused = ARGS.was_paused
  if first then was_paused = redis.call('EXISTS', K.paused) == 1 end
  local active = redis.call('ZCARD', K.active)
  if active > 0 then
    if not was_paused and redis.call('DEL', K.paused) == 1 then
      redis.call('DEL', K.waiting)
      redis.call('PUBLISH', K.wake_channel, '1')  -- as a resume does
    end
    return finish({deleted = 0, done = true, active = active, was_paused = was_paused}, now)
  end
  if first then redis.call('SET', K.paused, '1') end
  ARGS.was_paused = was_paused
end

-- Whether a job is left in the states: deleting a dependency can turn a waiting job of
-- the queue dead after the dead set was read.
local function left()
  for _, state in ipairs(ARGS.states) do
    if redis.call('EXISTS', state_key(state)) == 1 then return true end
  end
  return false
end

local deleted = 0
for _, state in ipairs(ARGS.states) do
  local room = ARGS.limit - deleted
  if room <= 0 then break end
  local seqs = redis.call('ZRANGE', state_key(state), 0, room - 1)
  for _, seq in ipairs(seqs) do
    local attempt = redis.call('HGET', K.job .. seq, J.attempt)
    remove_job(seq, state)
    if not ARGS.all_keys then job_event('removed', seq, state, attempt) end
  end
  deleted = deleted + #seqs
end
local done = deleted < ARGS.limit and not left()
if ARGS.all_keys and done then
  local workers = redis.call('ZRANGE', K.workers, 0, ARGS.limit - 1)
  for _, id in ipairs(workers) do
    redis.call('DEL', K.worker .. id)
    redis.call('ZREM', K.workers, id)
  end
  if #workers < ARGS.limit then
    redis.call('DEL', K.settings, K.paused, K.waiting, K.qevents, K.deadlines)
    redis.call('DEL', unpack(group_keys()))
    redis.call('DEL', unpack(stats_keys(now)))
  end
  return cmsgpack.pack({deleted = deleted, done = #workers < ARGS.limit,
    was_paused = ARGS.was_paused})
end
return finish({deleted = deleted, done = done, was_paused = ARGS.was_paused}, now)
