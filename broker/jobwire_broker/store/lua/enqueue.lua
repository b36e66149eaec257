-- enqueue.lua: adds jobs to a queue as ready or scheduled, honouring idempotency keys.
-- KEYS: the queue key set (lib.lua); uses seq, ready, scheduled, waiting, job:, events:,
--       idem:.
-- ARGS: {queue = name (for job ids), jobs = list of
--         {spec = the job's stored fields by name (schema.SPEC_FIELDS), encoded; empty
--                 ones left out,
--          delay_ms, run_at_ms (0: none), idempotency_window_ms}}
-- Returns: list of {seq, duplicate (bool), state}, one per job in order
-- Codes: 0 OK

local now = now_ms()
local out, woke = {}, false
for _, job in ipairs(ARGS.jobs) do
  local spec = job.spec
  local idem = spec[J.idempotency_key] or ''
  local existing = idem ~= '' and redis.call('GET', K.idem .. idem)
  if existing then
    local state = redis.call('HGET', K.job .. existing, J.state) or 'completed'
    out[#out + 1] = {seq = tonumber(existing), duplicate = true, state = state}
  else
    local seq = redis.call('INCR', K.seq)
    local run_at = math.max(now + job.delay_ms, job.run_at_ms)
    local state = run_at > now and 'scheduled' or 'ready'
    spec[J.id], spec[J.state], spec[J.created_ms], spec[J.run_at_ms] =
      ARGS.queue .. ':' .. seq, state, now, run_at
    spec[J.attempt], spec[J.releases] = 0, 0
    set(seq, spec)
    if state == 'ready' then
      redis.call('ZADD', K.ready, ready_score(spec[J.priority], seq), seq)
      woke = true
    else
      redis.call('ZADD', K.scheduled, run_at, seq)
    end
    if idem ~= '' then
      redis.call('SET', K.idem .. idem, seq, 'PX', job.idempotency_window_ms)
    end
    out[#out + 1] = {seq = seq, duplicate = false, state = state}
  end
end
if woke then wake() end
return cmsgpack.pack(out)
