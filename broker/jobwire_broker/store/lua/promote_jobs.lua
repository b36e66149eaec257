-- promote_jobs.lua: makes scheduled jobs ready now (PromoteJobs) and wakes waiters.
-- KEYS: the queue key set (lib.lua); uses ready, scheduled, waiting, job:, events:,
--       qevents.
-- ARGS: {seqs = list of seq, as decimal strings (numbers would reach Lua as doubles):
--        all or nothing, each must be scheduled; or
--        positions = list of {seq, score}, strings, that scan.lua found in scheduled:
--        each job goes only while still at that position}
-- Returns: {done = jobs made ready, refused_seq = the first job refused, a seq string
--           ('': none; then nothing changed), refused_state = its state ('' when it
--           does not exist)}
-- Codes: 0 OK

local now = now_ms()

local todo = {}
if ARGS.seqs then
  for _, seq in ipairs(ARGS.seqs) do
    local state = redis.call('HGET', K.job .. seq, J.state)
    if state ~= 'scheduled' then
      return finish({done = 0, refused_seq = seq, refused_state = state or ''}, now)
    end
    todo[#todo + 1] = seq
  end
else
  for _, p in ipairs(ARGS.positions) do
    local seq = p.seq
    local at = redis.call('ZSCORE', K.scheduled, seq)
    if at and tonumber(at) == tonumber(p.score) then todo[#todo + 1] = seq end
  end
end

for _, seq in ipairs(todo) do
  local f = fields(seq, {'attempt', 'priority', 'watched'})
  local attempt = f.attempt or '0'
  redis.call('ZREM', K.scheduled, seq)
  set(seq, {[J.run_at_ms] = now})
  make_ready(seq, f.priority or '0')
  if f.watched == '1' then  -- emit() would look it up again
    emit(seq, {[E.kind] = 'state', [E.state] = 'ready', [E.attempt] = attempt})
  end
  job_event('ready', seq, 'ready', attempt)
end
if #todo > 0 then wake() end
return finish({done = #todo, refused_seq = '', refused_state = ''}, now)
