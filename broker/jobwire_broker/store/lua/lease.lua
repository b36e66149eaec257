-- lease.lua: leases up to max_jobs ready jobs, best priority first, FIFO within a
-- priority, and no more than fit in a reply of max_bytes. Due scheduled jobs are
-- promoted first, so a delayed job never waits for maintenance.
-- Jobs with a concurrency key come from their key's set, keys served round-robin and
-- skipped while at their limit (lib.lua, Concurrency keys); each pick takes the better
-- (by ready score) of the first unkeyed job and the head of the key next in turn. Rate
-- limits are counted in sliding window logs of Redis time.
-- A paused queue leases nothing (and sets the waiting flag, so ResumeQueue's wake-up
-- reaches long-polls).
-- KEYS: the queue key set (lib.lua); uses ready, scheduled, active, waiting, job:, events:,
--       settings, paused, qevents, workers, worker:, expired, deadlines, group:.
-- ARGS: {max_jobs, token_prefix (random per call; job i gets token_prefix .. i),
--        worker_id (the caller's, or ''),
--        waiting_flag_ms (when nothing is leased: how long to keep the waiting flag set;
--        0: do not set it), max_bytes (the most bytes of jobs the reply may carry,
--        as reply_bytes estimates them), promote_limit (the most due scheduled jobs to
--        make ready first)}
-- A picked job whose start deadline has passed is expired instead of leased, and counts
-- against max_jobs.
-- Returns: {next_due_ms = ms until the next scheduled job is due, or -1,
--           paused = true when the queue is paused (nothing is leased then), or absent,
--           too_large = {seq, bytes} when the first job picked alone exceeds max_bytes
--           (nothing is leased then), or absent,
--           bytes_left = max_bytes less the estimates of the jobs leased,
--           expired = ready jobs expired at their start deadline instead of leased,
--           retry_after_ms = ms until a job held back by a rate limit or a hold may be
--           leased, or -1,
--           jobs = list of job hashes, each a flat field/value list (HGETALL)}
-- Codes: 0 OK

-- Room for a job's bounded fields in a reply (id, queue, content type, idempotency
-- key, error type, options, times, token): together under 1.5 KiB.
local FIXED_BYTES = 2048

-- An upper bound of the bytes job `jk` takes in a Lease reply, read before leasing it.
-- Stored JSON is never shorter than its protobuf form, except progress details, whose
-- Struct encoding takes up to ~6 bytes per JSON byte (a list of one-digit numbers).
local function reply_bytes(jk)
  local n = FIXED_BYTES + 6 * redis.call('HSTRLEN', jk, J.progress_details)
  for _, name in ipairs({J.payload, J.headers, J.traceparent, J.tracestate, J.baggage,
      J.error_message, J.progress_message}) do
    n = n + redis.call('HSTRLEN', jk, name)
  end
  return n
end

local now = now_ms()
if redis.call('EXISTS', K.paused) == 1 then
  if ARGS.waiting_flag_ms > 0 then
    redis.call('SET', K.waiting, '1', 'PX', ARGS.waiting_flag_ms)
  end
  worker_leased(ARGS.worker_id, 0, now)
  return finish({next_due_ms = -1, paused = true, bytes_left = ARGS.max_bytes,
    jobs = {}, retry_after_ms = -1}, now)
end
promote_due(now, ARGS.promote_limit)
unpark_due(now, ARGS.promote_limit)

-- Rate limits (sliding window logs) and holds; retry_after_ms reports the shortest wait
-- that held a ready job back.
local rl = redis.call('HMGET', K.settings, S.rate_limit, S.rate_period_ms, S.key_rate_limit,
  S.key_rate_period_ms)
local q_limit, q_period = tonumber(rl[1]), tonumber(rl[2])
local k_limit, k_period = tonumber(rl[3]), tonumber(rl[4])
local retry_after = -1
local function held_for(ms)
  if retry_after < 0 or ms < retry_after then retry_after = ms end
end

-- The head of the key next in turn, as seq, score and key. Keys that cannot run one now
-- (rate limited) are parked on the way; at most `looks` keys are examined per call.
local looks = 4 * ARGS.max_jobs + 10
local function next_keyed()
  while looks > 0 do
    looks = looks - 1
    local key = redis.call('ZRANGE', gk('rotation'), 0, 0)[1]
    if not key then
      -- None in turn: a key that joins later in this call (a dependant made ready by an
      -- expiry) waits for the next call.
      looks = 0
      return nil
    end
    local seq, score = group_head(key)
    if not seq then
      redis.call('ZREM', gk('rotation'), key)
    elseif not redis.call('ZSCORE', K.ready, seq) then
      take_ready(seq, key)  -- left ready without its key's set knowing: drop it
    else
      local wait = k_limit and window_wait(glog(key), k_limit, k_period, now) or 0
      if wait == 0 then return seq, score, key end
      park(key, now + wait)
      held_for(wait)
    end
  end
  return nil
end

-- The first max_jobs unkeyed ready jobs, read once: nothing else adds unkeyed jobs to
-- ready during the call, and each pick either takes the next one or leaves it.
local band = string.format('(%d', GROUP_BAND)
local heads = redis.call('ZRANGEBYSCORE', K.ready, '-inf', band, 'WITHSCORES', 'LIMIT', 0,
  ARGS.max_jobs)
local next_head = 1

-- The next job to lease (seq, and its key or nil), or nil.
local function pick()
  local seq, score = heads[next_head], tonumber(heads[next_head + 1])
  local kseq, kscore, kkey = next_keyed()
  if kseq and (not seq or kscore < score) then
    return kseq, kkey
  end
  if seq then next_head = next_head + 2 end
  return seq, nil
end

-- Start deadlines are looked up only on a queue that has some.
local has_deadlines = redis.call('EXISTS', K.deadlines) == 1

-- Leases job `seq` (of key `key`, or nil) as the reply's job number `n`.
local function lease(seq, key, n)
  local jk = K.job .. seq
  if key then
    -- The key's slot is taken; take_ready sends it to the back of the rotation (if it
    -- may run more).
    redis.call('HINCRBY', gk('active'), key, 1)
    redis.call('ZREM', gk('rotation'), key)
    if k_limit then window_add(glog(key), k_period, now, now .. ':' .. seq) end
  end
  take_ready(seq, key)
  redis.call('ZREM', K.deadlines, seq)  -- a retry is not held to the start deadline
  if q_limit then window_add(gk('qlog'), q_period, now, now .. ':' .. seq) end
  local f = fields(seq, {'lease_ms', 'timeout_ms'})
  local attempt = redis.call('HINCRBY', jk, J.attempt, 1)
  local deadline = now + tonumber(f.lease_ms)
  local exec_until = 0
  if tonumber(f.timeout_ms) > 0 then
    exec_until = now + tonumber(f.timeout_ms)
    if deadline > exec_until then deadline = exec_until end
  end
  set(seq, {[J.state] = 'active', [J.token] = ARGS.token_prefix .. n,
    [J.lease_until_ms] = deadline, [J.exec_until_ms] = exec_until, [J.started_ms] = now})
  if ARGS.worker_id ~= '' then
    set(seq, {[J.worker_id] = ARGS.worker_id})
  else
    redis.call('HDEL', jk, J.worker_id)
  end
  redis.call('ZADD', K.active, deadline, seq)
  emit(seq, {[E.kind] = 'state', [E.state] = 'active', [E.attempt] = attempt})
  job_event('leased', seq, 'active', attempt)
  return redis.call('HGETALL', jk)
end

local budget = ARGS.max_bytes
local out = {next_due_ms = -1, jobs = {}, expired = 0}
local blocked = redis.call('PTTL', gk('qblock'))
for _ = 1, ARGS.max_jobs do
  if blocked > 0 then
    if redis.call('ZCARD', K.ready) > 0 then held_for(blocked) end
    break
  end
  local seq, key = pick()
  if not seq then break end
  if has_deadlines and overdue(seq, now) then
    expire_job(seq, 'ready', now)
    out.expired = out.expired + 1
  else
    if q_limit then
      local wait = window_wait(gk('qlog'), q_limit, q_period, now)
      if wait > 0 then
        held_for(wait)
        break
      end
    end
    local size = reply_bytes(K.job .. seq)
    if size > budget then
      if #out.jobs == 0 then out.too_large = {seq = tonumber(seq), bytes = size} end
      break
    end
    budget = budget - size
    out.jobs[#out.jobs + 1] = lease(seq, key, #out.jobs + 1)
  end
end
if #out.jobs < ARGS.max_jobs then
  -- A key held back with jobs ready: when it may run again.
  local parked = redis.call('ZRANGE', gk('parked'), 0, 0, 'WITHSCORES')
  if parked[1] and redis.call('EXISTS', gready(parked[1])) == 1 then
    held_for(math.max(1, tonumber(parked[2]) - now))
  end
end
if #out.jobs == 0 and not out.too_large then
  -- Nothing leased (none ready, or every key at its limit or held): a long-poll waits
  -- for the wake-up of an enqueue, a retry or a freed slot.
  if ARGS.waiting_flag_ms > 0 then
    redis.call('SET', K.waiting, '1', 'PX', ARGS.waiting_flag_ms)
  end
  local first = redis.call('ZRANGE', K.scheduled, 0, 0, 'WITHSCORES')
  if first[2] then out.next_due_ms = math.max(0, tonumber(first[2]) - now) end
end
out.retry_after_ms = retry_after
out.bytes_left = budget
worker_leased(ARGS.worker_id, #out.jobs, now)
return finish(out, now)
