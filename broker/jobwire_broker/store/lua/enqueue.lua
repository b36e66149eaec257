-- enqueue.lua: adds jobs to a queue as ready or scheduled, honouring idempotency keys.
-- Options a job leaves unset take the queue's settings, else the broker's defaults.
-- KEYS: the queue key set (lib.lua); uses seq, ready, scheduled, waiting, job:, events:,
--       idem:, settings, qevents.
-- ARGS: {queue = name (for job ids),
--        defaults = the broker's defaults of the defaulted options, by stored field name
--                   (schema.DEFAULTED_FIELDS), encoded,
--        jobs = list of
--         {spec = the job's stored fields by name (schema.SPEC_FIELDS), encoded; empty
--                 and unset ones left out,
--          delay_ms, run_at_ms (0: none), idempotency_window_ms,
--          queue = the job's queue when not this one (a flow; its keys are in KEYS,
--                  named by ARGV[5]), absent otherwise,
--          deps = the jobs it waits for (docs/flows.md), absent for none: list of
--                 {queue, seq (a string), field = the request field naming it}, or
--                 {ref = the index (1-based) of an earlier job of this call}}}
-- Returns: list of {seq, duplicate (bool), state}, one per job in order; or, when a
--          dependency named by id does not exist, {missing = its field} (nothing written)
-- Codes: 0 OK

-- Options a queue's settings may default, stored under the job's field names; the
-- backoff members go together: a job that gives a backoff gives all of them.
local OPTIONS = {J.max_attempts, J.lease_ms, J.timeout_ms, J.priority}
local BACKOFF = {J.backoff_kind, J.backoff_initial_ms, J.backoff_max_ms,
  J.backoff_multiplier, J.backoff_jitter}

local queue_settings, settings_key = nil, nil

local function settings()
  if not queue_settings or settings_key ~= K.settings then
    queue_settings, settings_key = {}, K.settings
    local flat = redis.call('HGETALL', K.settings)
    for i = 1, #flat, 2 do queue_settings[flat[i]] = flat[i + 1] end
  end
  return queue_settings
end

local function apply_defaults(spec)
  for _, name in ipairs(OPTIONS) do
    if spec[name] == nil then spec[name] = settings()[name] or ARGS.defaults[name] end
  end
  if spec[J.backoff_kind] == nil then
    local source = settings()[J.backoff_kind] and settings() or ARGS.defaults
    for _, name in ipairs(BACKOFF) do spec[name] = source[name] end
  end
end

local now = now_ms()
local missing = missing_dependency(ARGS.jobs)
if missing then return finish({missing = missing}, now) end
local out, woke, created = {}, false, {}
for i, job in ipairs(ARGS.jobs) do
  local saved = enter(job.queue)
  local spec = job.spec
  local idem = spec[J.idempotency_key] or ''
  local existing = idem ~= '' and redis.call('GET', K.idem .. idem)
  if existing then
    local state = redis.call('HGET', K.job .. existing, J.state) or 'completed'
    out[#out + 1] = {seq = tonumber(existing), duplicate = true, state = state}
    created[i] = {queue = QUEUE, seq = existing}
  else
    apply_defaults(spec)
    local seq = redis.call('INCR', K.seq)
    local run_at = math.max(now + job.delay_ms, job.run_at_ms)
    local state = run_at > now and 'scheduled' or 'ready'
    spec[J.id], spec[J.state], spec[J.created_ms], spec[J.run_at_ms] =
      QUEUE .. ':' .. seq, state, now, run_at
    spec[J.attempt], spec[J.releases] = 0, 0
    set(seq, spec)
    created[i] = {queue = QUEUE, seq = seq}
    if job.deps then
      local deps = {}
      for j, d in ipairs(job.deps) do deps[j] = d.ref and created[d.ref] or d end
      state = wait_for(seq, deps, now) or state
    end
    if state == 'ready' then
      redis.call('ZADD', K.ready, ready_score(spec[J.priority], seq), seq)
      if saved then wake() else woke = true end
    elseif state == 'scheduled' then
      redis.call('ZADD', K.scheduled, run_at, seq)
    end
    if idem ~= '' then
      redis.call('SET', K.idem .. idem, seq, 'PX', job.idempotency_window_ms)
    end
    job_event('enqueued', seq, state, 0)
    out[#out + 1] = {seq = seq, duplicate = false, state = state}
  end
  leave(saved)
end
if woke then wake() end
return finish(out, now)
