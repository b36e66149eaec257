-- retry_jobs.lua: sends dead or cancelled jobs back to ready (RetryJobs,
-- RedriveDeadLetters) with their attempts counted afresh: `attempt` keeps growing, for
-- fencing, and `releases` catches up with it, so attempt - releases starts again at 0.
-- KEYS: the queue key set (lib.lua); uses ready, dead, cancelled, waiting, job:,
--       events:, qevents, dlgroups, dlg:, dlgmeta:.
-- ARGS: {seqs = list of seq, as decimal strings (numbers would reach Lua as doubles):
--        all or nothing, each must be dead or cancelled; or
--        state = 'dead' or 'cancelled' with positions = list of {seq, score}, strings,
--        that scan.lua found there: each job goes only while still at that position
--        (else skipped)}
-- Returns: {done = jobs sent back, refused_seq = the first job refused, a seq string
--           ('': none; then nothing changed), refused_state = its state ('' when it
--           does not exist)}
-- Codes: 0 OK

local now = now_ms()
local ALLOWED = {dead = true, cancelled = true}

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
    local at = redis.call('ZSCORE', K[ARGS.state], seq)
    if at and tonumber(at) == tonumber(p.score) then todo[#todo + 1] = {seq, ARGS.state} end
  end
end

for _, job in ipairs(todo) do
  local seq, state = job[1], job[2]
  local f = fields(seq, {'attempt', 'priority', 'watched'})
  local attempt = f.attempt or '0'
  if state == 'dead' then dead_remove(seq) end
  redis.call('ZREM', K[state], seq)
  redis.call('HDEL', K.job .. seq, J.cancel_requested, J.finished_ms)
  set(seq, {[J.releases] = attempt, [J.run_at_ms] = now})
  make_ready(seq, f.priority or '0')
  if f.watched == '1' then  -- emit() would look it up again
    emit(seq, {[E.kind] = 'state', [E.state] = 'ready', [E.attempt] = attempt})
  end
  job_event('ready', seq, 'ready', attempt)
end
if #todo > 0 then wake() end
return finish({done = #todo, refused_seq = '', refused_state = ''}, now)
