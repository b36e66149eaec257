-- lib.lua: helpers shared by every script; the loader puts this file in front of each.
--
-- Every script gets the same KEYS, the key set of one queue (all in one hash slot):
--   KEYS[1]  seq        counter of job sequence numbers
--   KEYS[2]  ready      zset seq -> priority/FIFO score
--   KEYS[3]  scheduled  zset seq -> due time (ms)
--   KEYS[4]  active     zset seq -> lease deadline (ms)
--   KEYS[5]  completed  zset seq -> finish time (ms)
--   KEYS[6]  dead       zset seq -> finish time (ms)
--   KEYS[7]  cancelled  zset seq -> finish time (ms)
--   KEYS[8]  waiting    flag: a Lease is long-polling this queue
--   KEYS[9]  job:       prefix of job hashes (job:<seq>)
--   KEYS[10] events:    prefix of job event streams (events:<seq>)
--   KEYS[11] idem:      prefix of idempotency keys (idem:<key>)
-- and the same first ARGV:
--   ARGV[1]  now override in ms, or "" to read Redis TIME (only tests set it)
--   ARGV[2]  pub/sub channel that wakes long-polling Leases of this queue
--   ARGV[3]  pub/sub channel that tells watchers a job has new events
-- Codes: 0 OK, 1 NOT_FOUND, 2 LEASE_LOST, 3 JOB_FINISHED

local OK, NOT_FOUND, LEASE_LOST, JOB_FINISHED = 0, 1, 2, 3

local K = {
  seq = KEYS[1], ready = KEYS[2], scheduled = KEYS[3], active = KEYS[4],
  completed = KEYS[5], dead = KEYS[6], cancelled = KEYS[7], waiting = KEYS[8],
  job = KEYS[9], events = KEYS[10], idem = KEYS[11],
  wake_channel = ARGV[2], events_channel = ARGV[3],
}

local function now_ms()
  if ARGV[1] ~= '' then return tonumber(ARGV[1]) end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Higher priority first, then FIFO by sequence: (1000 - priority) * 2^40 + seq.
local function ready_score(priority, seq)
  return (1000 - tonumber(priority)) * 1099511627776 + tonumber(seq)
end

-- Wakes long-polling Leases, but only when one is waiting, so a busy queue
-- does not flood every broker with messages.
local function wake()
  if redis.call('DEL', K.waiting) == 1 then
    redis.call('PUBLISH', K.wake_channel, '1')
  end
end

-- Appends an event to the job's stream, only once someone has watched the job.
local function emit(seq, fields)
  if redis.call('HGET', K.job .. seq, 'wt') ~= '1' then return end
  local args = {'XADD', K.events .. seq, 'MAXLEN', '~', '1000', '*'}
  for i = 1, #fields do args[#args + 1] = fields[i] end
  redis.call(unpack(args))
  redis.call('PUBLISH', K.events_channel, seq)
end

local function make_ready(seq, priority)
  redis.call('ZADD', K.ready, ready_score(priority, seq), seq)
  redis.call('HSET', K.job .. seq, 'state', 'ready')
end

-- Delay of the retry after attempt `attempt` (1-based) under a backoff spec
-- "kind,initial_ms,max_ms,multiplier,jitter"; kind 1 fixed, 2 exponential, 3 linear.
-- `rand` in [0, 1) comes from the broker, as scripts have no usable randomness.
local function backoff_delay(spec, attempt, rand)
  local kind, initial, cap, mult, jitter = string.match(
    spec, '^(%d+),(%d+),(%d+),([%d%.]+),([%d%.]+)$')
  kind, initial, cap = tonumber(kind), tonumber(initial), tonumber(cap)
  mult, jitter = tonumber(mult), tonumber(jitter)
  local delay = initial
  if kind == 2 then
    delay = initial * mult ^ (attempt - 1)
  elseif kind == 3 then
    delay = initial * attempt
  end
  if delay > cap then delay = cap end
  return math.floor(delay - delay * jitter * rand)
end

-- Ends a failed attempt of an active job: retry (ready or scheduled), dead, or
-- cancelled when cancellation was requested. Returns state, due time (ms).
local function settle_failure(seq, now, etype, emsg, non_retryable, delay_override, rand)
  local jk = K.job .. seq
  local f = redis.call('HMGET', jk, 'att', 'max_att', 'backoff', 'prio', 'cancel', 'rel')
  -- Released leases are not failures: only att - rel counts against max_attempts.
  local attempt, max_attempts = tonumber(f[1]) - tonumber(f[6] or '0'), tonumber(f[2])
  redis.call('ZREM', K.active, seq)
  redis.call('HDEL', jk, 'token', 'lease_until', 'exec_until')
  redis.call('HSET', jk, 'etype', etype, 'emsg', emsg, 'enr', non_retryable and '1' or '0')
  local state, due = nil, 0
  if f[5] == '1' then
    state = 'cancelled'
  elseif non_retryable or attempt >= max_attempts then
    state = 'dead'
  end
  if state then
    redis.call('ZADD', K[state], now, seq)
    redis.call('HSET', jk, 'state', state, 'finished', now)
  else
    local delay = delay_override
    if delay < 0 then delay = backoff_delay(f[3], attempt, rand) end
    due = now + delay
    redis.call('HSET', jk, 'run_at', due)
    if delay <= 0 then
      state = 'ready'
      make_ready(seq, f[4])
      wake()
    else
      state = 'scheduled'
      redis.call('ZADD', K.scheduled, due, seq)
      redis.call('HSET', jk, 'state', 'scheduled')
    end
  end
  emit(seq, {'k', 'state', 's', state, 'a', f[1], 'et', etype, 'em', emsg})
  return state, due
end

-- Moves up to `limit` due scheduled jobs to ready. Returns how many moved.
local function promote_due(now, limit)
  local due = redis.call('ZRANGEBYSCORE', K.scheduled, '-inf', now, 'LIMIT', 0, limit)
  for _, seq in ipairs(due) do
    redis.call('ZREM', K.scheduled, seq)
    local f = redis.call('HMGET', K.job .. seq, 'prio', 'att')
    make_ready(seq, f[1])
    emit(seq, {'k', 'state', 's', 'ready', 'a', f[2] or '0'})
  end
  if #due > 0 then wake() end
  return #due
end

-- Checks that `token` is the live lease of job `seq`. Returns the code and a
-- short reason, plus the job fields asked for in `fields` when OK.
local function check_lease(seq, token, now, fields)
  local jk = K.job .. seq
  local f = redis.call('HMGET', jk, 'state', 'token', 'lease_until', unpack(fields))
  if not f[1] then return NOT_FOUND, 'job not found' end
  if f[1] ~= 'active' or f[2] ~= token then return LEASE_LOST, 'lease is not current' end
  if tonumber(f[3]) <= now then return LEASE_LOST, 'lease expired' end
  local extra = {}
  for i = 4, #f do extra[#extra + 1] = f[i] end
  return OK, '', extra
end
