-- drain_queue.lua: deletes up to `limit` jobs of the given states (ready and scheduled
-- for DrainQueue; every state for DeleteQueue), with their events, dead-letter entries
-- and idempotency keys. Called again until it deletes nothing.
-- KEYS: the queue key set (lib.lua); uses the state sets, job:, events:, idem:,
--       dlgroups, dlg:, dlgmeta:, qevents, workers, worker:.
-- ARGS: {states = list of state names, limit, all_keys (true: once the states are
--        empty, also delete the queue's other keys: settings, paused, events, workers)}
-- Returns: {deleted = jobs deleted in this call}
-- Codes: 0 OK

local now = now_ms()
local deleted = 0
for _, state in ipairs(ARGS.states) do
  local room = ARGS.limit - deleted
  if room <= 0 then break end
  local seqs = redis.call('ZRANGE', K[state], 0, room - 1)
  for _, seq in ipairs(seqs) do
    local attempt = redis.call('HGET', K.job .. seq, J.attempt)
    remove_job(seq, state)
    if not ARGS.all_keys then job_event('removed', seq, state, attempt) end
  end
  deleted = deleted + #seqs
end
if ARGS.all_keys and deleted < ARGS.limit then
  local workers = redis.call('ZRANGE', K.workers, 0, ARGS.limit - 1)
  for _, id in ipairs(workers) do
    redis.call('DEL', K.worker .. id)
    redis.call('ZREM', K.workers, id)
  end
  if #workers < ARGS.limit then
    redis.call('DEL', K.settings, K.paused, K.waiting, K.qevents)
  end
  return cmsgpack.pack({deleted = deleted, done = #workers < ARGS.limit})
end
return finish({deleted = deleted, done = deleted < ARGS.limit}, now)
