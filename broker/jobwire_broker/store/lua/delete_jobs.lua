-- delete_jobs.lua: deletes jobs that are not active (DeleteJobs, PurgeDeadLetters), with
-- their events, dead-letter entries and idempotency keys.
-- KEYS: the queue key set (lib.lua); uses scheduled, ready, completed, dead, cancelled,
--       expired, deadlines, job:, events:, idem:, qevents, dlgroups, dlg:, dlgmeta:;
--       for dependants (lib.lua resolve_dependants): dependants:, blocked, resolve,
--       and the key sets of the dependants' other queues (ARGV[5]).
-- ARGS: {seqs = list of seq, as decimal strings (numbers would reach Lua as doubles):
--        all or nothing, none may be active; or
--        state = a state other than 'active' with positions = list of {seq, score},
--        strings, that scan.lua found there: each job goes only while still at that
--        position}
-- Returns: {done = jobs deleted, refused_seq = the first job refused, a seq string
--           ('': none; then nothing changed), refused_state = its state ('' when it
--           does not exist)}
-- Codes: 0 OK

local now = now_ms()
local ALLOWED = {scheduled = true, ready = true, completed = true, dead = true,
  cancelled = true, expired = true, waiting = true}

local todo = {}
if ARGS.seqs then
  for _, seq in ipairs(ARGS.seqs) do
    local state = redis.call('HGET', K.job .. seq, J.state)
    if not state or not ALLOWED[state] then
      return finish({done = 0, refused_seq = seq, refused_state = state or ''}, now)
    end
    todo[#todo + 1] = {seq, state}
  end
elseif ALLOWED[ARGS.state] then
  for _, p in ipairs(ARGS.positions) do
    local seq = p.seq
    local at = redis.call('ZSCORE', state_key(ARGS.state), seq)
    if at and tonumber(at) == tonumber(p.score) then todo[#todo + 1] = {seq, ARGS.state} end
  end
end

for _, job in ipairs(todo) do
  local seq, state = job[1], job[2]
  local attempt = redis.call('HGET', K.job .. seq, J.attempt) or '0'
  remove_job(seq, state)
  -- `state` is the one the job was deleted from: it has none after.
  job_event('removed', seq, state, attempt)
end
return finish({done = #todo, refused_seq = '', refused_state = ''}, now)
