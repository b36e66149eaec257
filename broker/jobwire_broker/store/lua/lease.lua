-- lease.lua: leases up to max_jobs ready jobs, best priority first, FIFO within a
-- priority, and no more than fit in a reply of max_bytes. Due scheduled jobs are
-- promoted first, so a delayed job never waits for maintenance.
-- A paused queue leases nothing (and sets the waiting flag, so ResumeQueue's wake-up
-- reaches long-polls).
-- KEYS: the queue key set (lib.lua); uses ready, scheduled, active, waiting, job:, events:,
--       paused, qevents, workers, worker:, expired, deadlines.
-- ARGS: {max_jobs, token_prefix (random per call; job i gets token_prefix .. i),
--        worker_id (the caller's, or ''),
--        waiting_flag_ms (when no job is ready: how long to keep the waiting flag set;
--        0: do not set it), max_bytes (the most bytes of jobs the reply may carry,
--        as reply_bytes estimates them), promote_limit (the most due scheduled jobs to
--        make ready first)}
-- The first max_jobs ready jobs are checked for a passed start deadline first: those are
-- expired instead of leased, and count against max_jobs.
-- Returns: {next_due_ms = ms until the next scheduled job is due, or -1,
--           paused = true when the queue is paused (nothing is leased then), or absent,
--           too_large = {seq, bytes} when the first ready job alone exceeds max_bytes
--           (nothing is leased then), or absent,
--           bytes_left = max_bytes less the estimates of the jobs leased,
--           expired = ready jobs expired at their start deadline instead of leased,
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
    jobs = {}}, now)
end
promote_due(now, ARGS.promote_limit)
-- Ready jobs past their start deadline are expired, not leased, within max_jobs.
local expired = expire_ready_heads(now, ARGS.max_jobs)
local seqs = {}
if expired < ARGS.max_jobs then
  seqs = redis.call('ZRANGE', K.ready, 0, ARGS.max_jobs - expired - 1)
end
local budget = ARGS.max_bytes
local out = {next_due_ms = -1, jobs = {}, expired = expired}
for i, seq in ipairs(seqs) do
  local jk = K.job .. seq
  local size = reply_bytes(jk)
  if size > budget then
    if i == 1 then out.too_large = {seq = tonumber(seq), bytes = size} end
    break
  end
  budget = budget - size
  redis.call('ZREM', K.ready, seq)
  redis.call('ZREM', K.deadlines, seq)  -- a retry is not held to the start deadline
  local f = fields(seq, {'lease_ms', 'timeout_ms'})
  local attempt = redis.call('HINCRBY', jk, J.attempt, 1)
  local deadline = now + tonumber(f.lease_ms)
  local exec_until = 0
  if tonumber(f.timeout_ms) > 0 then
    exec_until = now + tonumber(f.timeout_ms)
    if deadline > exec_until then deadline = exec_until end
  end
  set(seq, {[J.state] = 'active', [J.token] = ARGS.token_prefix .. i,
    [J.lease_until_ms] = deadline, [J.exec_until_ms] = exec_until, [J.started_ms] = now})
  if ARGS.worker_id ~= '' then
    set(seq, {[J.worker_id] = ARGS.worker_id})
  else
    redis.call('HDEL', jk, J.worker_id)
  end
  redis.call('ZADD', K.active, deadline, seq)
  emit(seq, {[E.kind] = 'state', [E.state] = 'active', [E.attempt] = attempt})
  job_event('leased', seq, 'active', attempt)
  out.jobs[#out.jobs + 1] = redis.call('HGETALL', jk)
end
if #seqs == 0 then
  if ARGS.waiting_flag_ms > 0 then
    redis.call('SET', K.waiting, '1', 'PX', ARGS.waiting_flag_ms)
  end
  local first = redis.call('ZRANGE', K.scheduled, 0, 0, 'WITHSCORES')
  if first[2] then out.next_due_ms = math.max(0, tonumber(first[2]) - now) end
end
out.bytes_left = budget
worker_leased(ARGS.worker_id, #out.jobs, now)
return finish(out, now)
