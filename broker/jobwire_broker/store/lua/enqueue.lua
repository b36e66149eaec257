-- enqueue.lua: adds jobs to a queue as ready or scheduled, honouring idempotency keys.
-- Options a job leaves unset take the queue's settings, else the broker's defaults.
-- KEYS: the queue key set (lib.lua); uses seq, ready, scheduled, waiting, job:, events:,
--       idem:, settings, qevents, deadlines, blocked, dependants:, resolve, and the
--       key sets of a flow's other queues (ARGV[5]).
-- ARGS: {queue = name (for job ids),
--        defaults = the broker's defaults of the defaulted options, by stored field name
--                   (schema.DEFAULTED_FIELDS), encoded,
--        jobs = list of
--         {spec = the job's stored fields by name (schema.SPEC_FIELDS), encoded; empty
--                 and unset ones left out,
--          delay_ms, run_at_ms (0: none), idempotency_window_ms,
--          idempotency_mode = 1 first, 2 replace, 3 extend (job.proto IdempotencyMode),
--          queue = the job's queue when not this one (a flow; its keys are in KEYS,
--                  named by ARGV[5]), absent otherwise,
--          deps = the jobs it waits for (docs/flows.md), absent for none: list of
--                 {queue, seq (a string), field = the request field naming it}, or
--                 {ref = the index (1-based) of an earlier job of this call}},
--        spec_fields = every stored spec field name (schema), given when a job replaces:
--          those the new spec leaves out are cleared}
-- A job's start deadline (spec start_deadline_ms) must be after now and not before its
-- run time; when one is not, nothing at all is written.
-- Returns: list of {seq, duplicate (bool), state}, one per job in order; or
--          {invalid = list of {index (1-based), problem = 'past' or 'before_run_time',
--          now, run_at_ms}} when a start deadline is refused; or, when a dependency
--          named by id does not exist, {missing = its field} (nothing written either way)
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
  if spec[J.concurrency_key] and not spec[J.concurrency_limit] then
    spec[J.concurrency_limit] = settings()[S.concurrency_limit] or '1'
  end
end

local REPLACE, EXTEND = 2, 3
local REPLACEABLE = {scheduled = true, ready = true, waiting = true}

local now = now_ms()

-- Start deadlines are checked against this call's clock before anything is written.
local refused = {}
for i, job in ipairs(ARGS.jobs) do
  local deadline = tonumber(job.spec[J.start_deadline_ms] or '0')
  if deadline > 0 then
    local run_at = math.max(now + job.delay_ms, job.run_at_ms)
    if deadline <= now then
      refused[#refused + 1] = {index = i, problem = 'past', now = now, run_at_ms = run_at}
    elseif deadline < run_at then
      refused[#refused + 1] = {index = i, problem = 'before_run_time', now = now,
        run_at_ms = run_at}
    end
  end
end
if #refused > 0 then return finish({invalid = refused}, now) end

-- Puts job `seq`'s start deadline, if it has one, in the queue's set of deadlines.
local function track_deadline(seq, spec)
  if spec[J.start_deadline_ms] then
    redis.call('ZADD', K.deadlines, spec[J.start_deadline_ms], seq)
  else
    redis.call('ZREM', K.deadlines, seq)
  end
end

-- Debounce: pending job `seq` (in `state`) takes the new spec, keeps its id, sequence
-- (its FIFO place) and attempts; its run time counts again from now. Returns its state.
local function replace(seq, state, job)
  local spec = job.spec
  apply_defaults(spec)
  local clear = {}
  for _, name in ipairs(ARGS.spec_fields) do
    if spec[name] == nil then clear[#clear + 1] = name end
  end
  if #clear > 0 then redis.call('HDEL', K.job .. seq, unpack(clear)) end
  local run_at = math.max(now + job.delay_ms, job.run_at_ms)
  spec[J.run_at_ms] = run_at
  local after = state
  if state ~= 'waiting' then  -- a waiting job stays so until its dependencies finish
    after = run_at > now and 'scheduled' or 'ready'
    leave_state(seq, state)
    spec[J.state] = after
  end
  set(seq, spec)
  if after == 'ready' then
    add_ready(seq, spec[J.priority], spec[J.concurrency_key])
  elseif after == 'scheduled' then
    redis.call('ZADD', K.scheduled, run_at, seq)
  end
  track_deadline(seq, spec)
  local attempt = redis.call('HGET', K.job .. seq, J.attempt) or '0'
  emit(seq, {[E.kind] = 'state', [E.state] = after, [E.attempt] = attempt})
  job_event('enqueued', seq, after, attempt)
  return after
end

local missing = missing_dependency(ARGS.jobs)
if missing then return finish({missing = missing}, now) end
local out, woke, created = {}, false, {}
for i, job in ipairs(ARGS.jobs) do
  local saved = enter(job.queue)
  local spec = job.spec
  local idem = spec[J.idempotency_key] or ''
  local existing = idem ~= '' and redis.call('GET', K.idem .. idem)
  local held = existing and redis.call('HGET', K.job .. existing, J.state)
  if existing and job.idempotency_mode == REPLACE then
    -- Once the holder is active or finished, a new job takes the key.
    if not REPLACEABLE[held] then existing = false end
  end
  if existing and job.idempotency_mode == REPLACE then
    local state = replace(existing, held, job)
    redis.call('SET', K.idem .. idem, existing, 'PX', job.idempotency_window_ms)
    if state == 'ready' then
      if saved then wake() else woke = true end
    end
    out[#out + 1] = {seq = tonumber(existing), duplicate = true, state = state}
    created[i] = {queue = QUEUE, seq = existing}
  elseif existing then
    if job.idempotency_mode == EXTEND then
      redis.call('PEXPIRE', K.idem .. idem, job.idempotency_window_ms)
    end
    out[#out + 1] = {seq = tonumber(existing), duplicate = true, state = held or 'completed'}
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
    if spec[J.start_deadline_ms] then track_deadline(seq, spec) end
    created[i] = {queue = QUEUE, seq = seq}
    if job.deps then
      local deps = {}
      for j, d in ipairs(job.deps) do deps[j] = d.ref and created[d.ref] or d end
      state = wait_for(seq, deps, now) or state
    end
    if state == 'ready' then
      add_ready(seq, spec[J.priority], spec[J.concurrency_key])
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
