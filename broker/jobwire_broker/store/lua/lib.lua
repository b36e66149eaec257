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
--   KEYS[12] settings   hash: the queue's settings (store/settings.py SETTING_FIELDS)
--   KEYS[13] paused     flag: the queue is paused (Lease hands out nothing)
--   KEYS[14] qevents    stream: the queue's events, for WatchQueue (QE fields)
--   KEYS[15] stats:     prefix of throughput buckets (stats:<10 s bucket>, a hash)
--   KEYS[16] workers    zset worker id -> last seen (ms)
--   KEYS[17] worker:    prefix of worker records (worker:<id>, a hash of W fields)
--   KEYS[18] dlgroups   zset dead-letter fingerprint -> last dead time (ms)
--   KEYS[19] dlg:       prefix of a group's dead jobs (dlg:<fingerprint>, zset seq -> ms)
--   KEYS[20] dlgmeta:   prefix of a group's description (dlgmeta:<fingerprint>, a hash)
--   KEYS[21] expired    zset seq -> finish time (ms): jobs not leased by their deadline
--   KEYS[22] deadlines  zset seq -> start deadline (ms) of pending jobs never leased
--   KEYS[23] blocked    zset seq -> enqueue time (ms): jobs WAITING for dependencies
--   KEYS[24] dependants: prefix of a job's dependants: dependants:<seq> is the set of
--                       queues holding some, dependants:<seq>:<queue> their seqs there
--   KEYS[25] resolve    zset '<seq>|<outcome>' -> time (ms): finished jobs whose
--                       dependants are still to resolve (docs/flows.md)
--   KEYS[26] schedules  zset schedule name -> next tick due (ms); paused ones left out
--   KEYS[27] schedule:  prefix of schedule records (schedule:<name>, a hash of SC fields)
--   KEYS[28] group:     prefix of the concurrency key and rate limit keys (gk() below)
-- and, after the script's own queue, the key sets of other queues in the same order
-- (only on a single node, for dependants across queues: ARGV[5] names them).
-- and the same ARGV:
--   ARGV[1]  now override in ms, or "" to read Redis TIME (only tests set it)
--   ARGV[2]  pub/sub channel that wakes long-polling Leases of this queue
--   ARGV[3]  pub/sub channel that tells watchers a job has new events
--   ARGV[4]  the script's arguments: one MessagePack map or list, named in its header
--   ARGV[5]  MessagePack {queue = the script's queue, size = keys per queue, queues =
--            list of {name, wake, events} of the further key sets in KEYS, in order,
--            dep_error = {fingerprint, template} of DEPENDENCY_FAILED}; "" in tests
-- Every script returns one MessagePack value, named in its header, that store.py decodes.
-- Codes: 0 OK, 1 NOT_FOUND, 2 LEASE_LOST, 3 JOB_FINISHED

local OK, NOT_FOUND, LEASE_LOST, JOB_FINISHED = 0, 1, 2, 3

local K = {
  seq = KEYS[1], ready = KEYS[2], scheduled = KEYS[3], active = KEYS[4],
  completed = KEYS[5], dead = KEYS[6], cancelled = KEYS[7], waiting = KEYS[8],
  job = KEYS[9], events = KEYS[10], idem = KEYS[11], settings = KEYS[12],
  paused = KEYS[13], qevents = KEYS[14], stats = KEYS[15], workers = KEYS[16],
  worker = KEYS[17], dlgroups = KEYS[18], dlg = KEYS[19], dlgmeta = KEYS[20],
  expired = KEYS[21], deadlines = KEYS[22],
  blocked = KEYS[23], dependants = KEYS[24], resolve = KEYS[25],
  schedules = KEYS[26], schedule = KEYS[27], group = KEYS[28],
  wake_channel = ARGV[2], events_channel = ARGV[3],
}

-- The sorted set of the jobs in `state` (keys.py state_set): waiting jobs are in
-- `blocked`, as `waiting` names the long-poll flag.
local function state_key(state)
  if state == 'waiting' then return K.blocked end
  return K[state]
end

-- The job hash fields scripts name (store/schema.py SCRIPT_FIELDS; a test holds the two
-- equal). A record is flattened, one field per member: 'backoff.kind'. The spec
-- fields scripts do not read are stored as given.
local J = {
  payload = 'payload', headers = 'headers', priority = 'priority',
  max_attempts = 'max_attempts', lease_ms = 'lease_ms', timeout_ms = 'timeout_ms',
  idempotency_key = 'idempotency_key',
  backoff_kind = 'backoff.kind', backoff_initial_ms = 'backoff.initial_ms',
  backoff_max_ms = 'backoff.max_ms', backoff_multiplier = 'backoff.multiplier',
  backoff_jitter = 'backoff.jitter',
  traceparent = 'trace.traceparent', tracestate = 'trace.tracestate',
  baggage = 'trace.baggage',
  id = 'id', exec_until_ms = 'exec_until_ms', watched = 'watched', state = 'state',
  attempt = 'attempt', releases = 'releases', token = 'token',
  lease_until_ms = 'lease_until_ms', created_ms = 'created_ms', run_at_ms = 'run_at_ms',
  started_ms = 'started_ms', finished_ms = 'finished_ms',
  progress_percent = 'progress.percent', progress_message = 'progress.message',
  progress_details = 'progress.details_json',
  result = 'result', result_content_type = 'result_content_type',
  error_type = 'error.type', error_message = 'error.message',
  error_non_retryable = 'error.non_retryable', error_fingerprint = 'error.fingerprint',
  cancel_requested = 'cancel_requested', worker_id = 'worker_id',
  start_deadline_ms = 'start_deadline_ms',
  depends_on = 'depends_on', on_dependency_failure = 'on_dependency_failure',
  pending_dependencies = 'pending_dependencies',
  settled_token = 'settled_token', settled_op = 'settled_op', settled_ms = 'settled_ms',
  settled_state = 'settled_state', settled_due_ms = 'settled_due_ms',
  concurrency_key = 'concurrency_key', concurrency_limit = 'concurrency_limit',
}

-- The fields of an event (store/schema.py EVENT_FIELDS).
local E = {
  kind = 'kind', state = 'state', attempt = 'attempt',
  progress_percent = 'progress.percent', progress_message = 'progress.message',
  progress_details = 'progress.details_json',
  error_type = 'error.type', error_message = 'error.message',
  error_non_retryable = 'error.non_retryable', error_fingerprint = 'error.fingerprint',
}

-- The fields of a queue event (store/schema.py QUEUE_EVENT_FIELDS): an event's fields
-- plus the job's sequence number ('' for queue-wide events).
local QE = {
  kind = 'kind', job = 'job', state = 'state', attempt = 'attempt',
  progress_percent = 'progress.percent', progress_message = 'progress.message',
  progress_details = 'progress.details_json',
  error_type = 'error.type', error_message = 'error.message',
  error_non_retryable = 'error.non_retryable', error_fingerprint = 'error.fingerprint',
}

-- The fields of a worker record (store/schema.py WORKER_FIELDS).
local W = {
  last_lease_ms = 'last_lease_ms', last_heartbeat_ms = 'last_heartbeat_ms',
  in_flight = 'in_flight', expired_ms = 'expired_ms',
}

-- The fields of a schedule record scripts read or write (store/schema.py
-- SCHEDULE_SCRIPT_FIELDS); the others are stored as given.
local SC = {version = 'version', cursor_ms = 'cursor_ms', paused = 'paused',
  last_tick_ms = 'last_tick_ms', last_job_id = 'last_job_id', create_ms = 'create_ms',
  update_ms = 'update_ms'}

-- The fields of a dead-letter group's description.
local G = {error_type = 'error_type', template = 'template'}

-- Settings scripts read (store/settings.py holds the full list), and the default of
-- each that is not passed in by the broker.
local S = {event_history = 'event_history', keep_completed = 'keep_completed',
  completed_max_age_ms = 'completed_max_age_ms', keep_dead = 'keep_dead',
  dead_max_age_ms = 'dead_max_age_ms', concurrency_limit = 'concurrency_limit',
  rate_limit = 'rate_limit.limit', rate_period_ms = 'rate_limit.period_ms',
  key_rate_limit = 'key_rate_limit.limit', key_rate_period_ms = 'key_rate_limit.period_ms'}
local DEFAULT_EVENT_HISTORY = 10000

-- The members of a model.Progress or model.JobError as a script receives them, with
-- the job and event fields they are stored in.
local PROGRESS = {
  percent = {J.progress_percent, E.progress_percent},
  message = {J.progress_message, E.progress_message},
  details_json = {J.progress_details, E.progress_details},
}
local ERROR = {
  type = {J.error_type, E.error_type},
  message = {J.error_message, E.error_message},
  non_retryable = {J.error_non_retryable, E.error_non_retryable},
  fingerprint = {J.error_fingerprint, E.error_fingerprint},
}

-- A record (a map of members) as job fields (which = 1) or event fields (which = 2).
local function record(members, record_fields, which, into)
  for member, names in pairs(record_fields) do
    into[names[which]] = members[member]
  end
  return into
end

-- The job's trace context members, as store.py reads them.
local function trace_of(f)
  return {traceparent = f.traceparent or '', tracestate = f.tracestate or '',
    baggage = f.baggage or ''}
end

local ARGS = cmsgpack.unpack(ARGV[4])

local function now_ms()
  if ARGV[1] ~= '' then return tonumber(ARGV[1]) end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Reads fields of job `seq`, given by their keys in J: {'attempt', 'backoff_kind'}
-- returns {attempt = ..., backoff_kind = ...}.
local function fields(seq, keys)
  local names = {}
  for i, key in ipairs(keys) do names[i] = J[key] end
  local values = redis.call('HMGET', K.job .. seq, unpack(names))
  local out = {}
  for i, key in ipairs(keys) do out[key] = values[i] end
  return out
end

-- Writes a table of field -> value to job `seq`.
local function set(seq, values)
  local args = {'HSET', K.job .. seq}
  for name, value in pairs(values) do
    args[#args + 1] = name
    args[#args + 1] = value
  end
  redis.call(unpack(args))
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

-- Concurrency keys and rate limits (docs/concurrency-and-rate-limits.md) ---------------
-- A ready job with a concurrency key sits in `ready` above GROUP_BAND, beyond the range
-- Lease reads unkeyed jobs from (so counts, ListJobs, drain and delete still see it), and
-- in its key's own zset (group:ready:<key>, scored as in ready), from which Lease takes
-- it. The rotation holds the keys that have a ready job, a free slot and no hold, in
-- turn order: Lease serves its front and sends a served key to the back; a key at its
-- limit leaves it until a slot frees. The keys under group: (gk() names them; they
-- follow K when a script enters another queue):
--   active      hash key -> active jobs of the key
--   rotation    zset key -> turn (from the counter `turn`): the keys Lease may serve
--   parked      zset key -> ms: keys held back until then (key rate limit, a Fail's
--               rate_limit_delay)
--   qlog        zset: the queue's leases in the last rate_limit period, scored by ms
--   qblock      flag with a TTL: the whole queue is held back (a Fail's
--               rate_limit_delay of a job without a key)
--   ready:<k>   zset seq -> ready score: key k's ready jobs
--   klog:<k>    zset: key k's leases in the last key_rate_limit period
local GROUP_BAND = 4503599627370496  -- 2^52: above every ready score, below 2^53

local function gk(name) return K.group .. name end
local function gready(key) return K.group .. 'ready:' .. key end
local function glog(key) return K.group .. 'klog:' .. key end

-- The fixed keys of the section, for DeleteQueue (the per-key ones empty themselves).
local function group_keys()
  return {gk('active'), gk('rotation'), gk('turn'), gk('parked'), gk('qlog'), gk('qblock')}
end

-- The concurrency key of job `seq`, or nil.
local function key_of(seq)
  local key = redis.call('HGET', K.job .. seq, J.concurrency_key)
  if key and key ~= '' then return key end
  return nil
end

-- The next job of `key` (seq, score) when the key may run one more now, else nil.
local function group_head(key)
  local head = redis.call('ZRANGE', gready(key), 0, 0, 'WITHSCORES')
  if not head[1] or redis.call('ZSCORE', gk('parked'), key) then return nil end
  local limit = tonumber(redis.call('HGET', K.job .. head[1], J.concurrency_limit) or '1')
  if tonumber(redis.call('HGET', gk('active'), key) or '0') >= limit then return nil end
  return head[1], tonumber(head[2])
end

-- Puts `key` at the back of the rotation when it may run a job now and is not in it,
-- or takes it out when it may not. Returns true when it joined.
local function group_refresh(key)
  if not group_head(key) then
    redis.call('ZREM', gk('rotation'), key)
    return false
  end
  if redis.call('ZSCORE', gk('rotation'), key) then return false end
  redis.call('ZADD', gk('rotation'), redis.call('INCR', gk('turn')), key)
  return true
end

-- Adds job `seq` to ready (the caller sets its state), and a keyed one to its key's set.
local function add_ready(seq, priority, key)
  local score = ready_score(priority, seq)
  if key == nil or key == '' then
    redis.call('ZADD', K.ready, score, seq)
    return
  end
  redis.call('ZADD', K.ready, GROUP_BAND + score, seq)
  redis.call('ZADD', gready(key), score, seq)
  group_refresh(key)
end

-- Takes job `seq` (of concurrency key `key`, or nil) out of ready.
local function take_ready(seq, key)
  redis.call('ZREM', K.ready, seq)
  if key then
    redis.call('ZREM', gready(key), seq)
    group_refresh(key)
  end
end

-- Takes job `seq` out of active and frees its key's slot, waking long-polls when that
-- lets the key run again.
local function leave_active(seq)
  if redis.call('ZREM', K.active, seq) == 0 then return end
  local key = key_of(seq)
  if not key then return end
  if redis.call('HINCRBY', gk('active'), key, -1) <= 0 then
    redis.call('HDEL', gk('active'), key)
  end
  if group_refresh(key) then wake() end
end

-- Takes job `seq` out of the set of `state`, with its key's bookkeeping.
local function leave_state(seq, state)
  if state == 'ready' then
    take_ready(seq, key_of(seq))
  elseif state == 'active' then
    leave_active(seq)
  else
    redis.call('ZREM', state_key(state), seq)
  end
end

-- Holds `key` back until `until_ms` (a later hold wins).
local function park(key, until_ms)
  redis.call('ZADD', gk('parked'), 'GT', until_ms, key)
  redis.call('ZREM', gk('rotation'), key)
end

-- Lets up to `limit` keys whose hold has passed back into the rotation.
local function unpark_due(now, limit)
  local due = redis.call('ZRANGEBYSCORE', gk('parked'), '-inf', now, 'LIMIT', 0, limit)
  for _, key in ipairs(due) do
    redis.call('ZREM', gk('parked'), key)
    group_refresh(key)
  end
  return #due
end

-- Holds back the key of job `seq`, or its queue when it has none, for `ms` (a Fail's
-- rate_limit_delay).
local function hold_back(seq, now, ms)
  local key = key_of(seq)
  if key then
    park(key, now + ms)
  elseif redis.call('PTTL', gk('qblock')) < ms then
    redis.call('SET', gk('qblock'), '1', 'PX', ms)
  end
end

-- Sliding window log: `log` holds one member per lease of the last `period` ms, scored
-- by its time. Returns 0 when one more lease fits in the window now, else the ms until
-- one does. Members that left the window are trimmed, at most 100 per call (counting
-- needs no trim; the log also expires `period` after its last lease).
local function window_wait(log, limit, period, now)
  local cutoff = string.format('%d', now - period)
  local old = redis.call('ZCOUNT', log, '-inf', cutoff)
  if old > 0 then redis.call('ZREMRANGEBYRANK', log, 0, math.min(old, 100) - 1) end
  local n = redis.call('ZCOUNT', log, '(' .. cutoff, '+inf')
  if n < limit then return 0 end
  local first = redis.call('ZRANGEBYSCORE', log, '(' .. cutoff, '+inf', 'WITHSCORES',
    'LIMIT', n - limit, 1)
  return math.max(1, tonumber(first[2]) + period - now)
end

local function window_add(log, period, now, member)
  redis.call('ZADD', log, now, member)
  redis.call('PEXPIRE', log, period)
end

-- Appends an event (a table of E fields) to the job's stream, only once someone has
-- watched the job.
local function emit(seq, event)
  if redis.call('HGET', K.job .. seq, J.watched) ~= '1' then return end
  local args = {'XADD', K.events .. seq, 'MAXLEN', '~', '1000', '*'}
  for name, value in pairs(event) do
    args[#args + 1] = name
    args[#args + 1] = value
  end
  redis.call(unpack(args))
  redis.call('PUBLISH', K.events_channel, seq)
end

-- Queue events ------------------------------------------------------------------------

local history, qevents_added = nil, false

-- Appends an event to the queue's stream (WatchQueue), trimmed to the queue's
-- event_history setting; `event` is a table of QE fields.
local function qevent(event)
  if history == nil then
    history = tonumber(redis.call('HGET', K.settings, S.event_history) or DEFAULT_EVENT_HISTORY)
  end
  if history <= 0 then return end
  local args = {'XADD', K.qevents, 'MAXLEN', '~', history, '*'}
  for name, value in pairs(event) do
    args[#args + 1] = name
    args[#args + 1] = value
  end
  redis.call(unpack(args))
  qevents_added = true
end

-- A queue event about job `seq`, with an error or progress record's members, if given.
local function job_event(kind, seq, state, attempt, err)
  local event = {[QE.kind] = kind, [QE.job] = seq, [QE.state] = state,
    [QE.attempt] = attempt or '0'}
  if err then
    for member, names in pairs(ERROR) do event['error.' .. member] = err[member] end
  end
  qevent(event)
end

-- Throughput counters: tallied during a script, written once at its end by finish().
local TALLY = {}
local STATS_BUCKET_MS, STATS_TTL_S = 10000, 3900

local function tally(name, n)
  TALLY[name] = (TALLY[name] or 0) + (n or 1)
end

-- Every throughput bucket that may still exist at `now`: a bucket expires STATS_TTL_S
-- after its last write, so none older than that survives. Named, never scanned for.
local function stats_keys(now)
  local last = math.floor(now / STATS_BUCKET_MS)
  local keys = {}
  for b = last - math.ceil(STATS_TTL_S * 1000 / STATS_BUCKET_MS), last do
    keys[#keys + 1] = K.stats .. b
  end
  return keys
end

-- Worker registry ---------------------------------------------------------------------

-- Worker `id` leased `n` jobs now.
local function worker_leased(id, n, now)
  if id == '' then return end
  local key = K.worker .. id
  redis.call('ZADD', K.workers, now, id)
  redis.call('HSET', key, W.last_lease_ms, now)
  if n > 0 then redis.call('HINCRBY', key, W.in_flight, n) end
end

local HEARD = {}

-- A heartbeat reached a job leased by worker `id` (recorded once per script).
local function worker_heard(id, now)
  if not id or id == '' or HEARD[id] then return end
  HEARD[id] = true
  redis.call('ZADD', K.workers, now, id)
  redis.call('HSET', K.worker .. id, W.last_heartbeat_ms, now)
end

-- Leases that ended in this script, per worker id, and the workers whose leases expired:
-- written once per worker by finish().
local ENDED, EXPIRED = {}, {}

-- A lease held by worker `id` ended; `expired` when it ran out.
local function worker_done(id, now, expired)
  if not id or id == '' then return end
  ENDED[id] = (ENDED[id] or 0) + 1
  if expired then EXPIRED[id] = now end
end

local function flush_workers()
  for id, n in pairs(ENDED) do
    local key = K.worker .. id
    if redis.call('EXISTS', key) == 1 then
      if redis.call('HINCRBY', key, W.in_flight, -n) < 0 then
        redis.call('HSET', key, W.in_flight, 0)
      end
      if EXPIRED[id] then redis.call('HSET', key, W.expired_ms, EXPIRED[id]) end
    end
  end
end

-- Every script ends with `return finish(result, now)`: writes the tallies, tells queue
-- watchers of new events (once per script), and packs the result.
local function finish(result, now)
  local key = nil
  for name, n in pairs(TALLY) do
    key = key or (K.stats .. math.floor(now / STATS_BUCKET_MS))
    redis.call('HINCRBY', key, name, n)
  end
  if key then redis.call('EXPIRE', key, STATS_TTL_S) end
  flush_workers()
  if qevents_added then redis.call('PUBLISH', K.events_channel, 'q') end
  return cmsgpack.pack(result)
end

-- Dead-letter groups ------------------------------------------------------------------

-- Files dead job `seq` under its error's fingerprint (err: JobError's members plus
-- `template`, the message with its variable parts replaced).
local function dead_add(seq, now, err)
  local fp = err.fingerprint
  if not fp or fp == '' then return end
  redis.call('ZADD', K.dlg .. fp, now, seq)
  redis.call('ZADD', K.dlgroups, 'GT', now, fp)  -- GT still adds a new member
  if err.template then
    redis.call('HSET', K.dlgmeta .. fp, G.error_type, err.type, G.template, err.template)
  end
end

-- Takes job `seq` out of its dead-letter group, before it leaves the dead set.
local function dead_remove(seq)
  local fp = redis.call('HGET', K.job .. seq, J.error_fingerprint)
  if not fp then return end
  local members = K.dlg .. fp
  redis.call('ZREM', members, seq)
  if redis.call('EXISTS', members) == 0 then
    redis.call('ZREM', K.dlgroups, fp)
    redis.call('DEL', K.dlgmeta .. fp)
  end
end

-- Resolves the jobs waiting on job `seq` (defined with the dependencies, below).
local resolve_dependants

-- How long a deleted job's event stream outlives it: long enough for its watchers to
-- read the 'deleted' event and end, not so long that deleted jobs pile up.
local DELETED_EVENTS_TTL_S = 60

-- Deletes job `seq` (in set `state`) with its events, its dead-letter entry and its
-- idempotency key (when that still names it). A watched job's stream instead gets a
-- last 'deleted' event (with the state it was deleted from) and expires soon after.
local function remove_job(seq, state)
  local outcome = state
  if state ~= 'completed' and state ~= 'dead' and state ~= 'cancelled'
    and state ~= 'expired' then outcome = 'deleted' end
  resolve_dependants(seq, outcome, now_ms())
  leave_state(seq, state)
  redis.call('ZREM', K.deadlines, seq)
  if state == 'dead' then dead_remove(seq) end
  local f = fields(seq, {'idempotency_key', 'watched', 'attempt'})
  if f.idempotency_key and redis.call('GET', K.idem .. f.idempotency_key) == tostring(seq) then
    redis.call('DEL', K.idem .. f.idempotency_key)
  end
  if f.watched == '1' then
    emit(seq, {[E.kind] = 'deleted', [E.state] = state, [E.attempt] = f.attempt or '0'})
    redis.call('EXPIRE', K.events .. seq, DELETED_EVENTS_TTL_S)
    redis.call('DEL', K.job .. seq)
  else
    redis.call('DEL', K.job .. seq, K.events .. seq)
  end
end

local function make_ready(seq, priority)
  add_ready(seq, priority, key_of(seq))
  set(seq, {[J.state] = 'ready'})
end

-- Delay of the retry after counted attempt `attempt` (1-based) under the job's backoff
-- fields (f from fields()): kind 1 fixed, 2 exponential, 3 linear.
-- `rand` in [0, 1) comes from the broker, as scripts have no usable randomness.
local function backoff_delay(f, attempt, rand)
  local kind, initial = tonumber(f.backoff_kind), tonumber(f.backoff_initial_ms)
  local delay = initial
  if kind == 2 then
    delay = initial * tonumber(f.backoff_multiplier) ^ (attempt - 1)
  elseif kind == 3 then
    delay = initial * attempt
  end
  local cap = tonumber(f.backoff_max_ms)
  if delay > cap then delay = cap end
  return math.floor(delay - delay * tonumber(f.backoff_jitter) * rand)
end

-- Ends a failed attempt of an active job: retry (ready or scheduled), dead, or
-- cancelled when cancellation was requested. `err` holds model.JobError's members (and
-- `template`, for dead_add); `expired` says the lease ran out. Returns state, due (ms).
local function settle_failure(seq, now, err, delay_override, rand, expired)
  local f = fields(seq, {'attempt', 'releases', 'max_attempts', 'priority',
    'cancel_requested', 'backoff_kind', 'backoff_initial_ms', 'backoff_max_ms',
    'backoff_multiplier', 'backoff_jitter', 'worker_id'})
  worker_done(f.worker_id, now, expired)
  tally('failed')
  -- Released leases are not failures: only attempt - releases counts.
  local counted = tonumber(f.attempt) - tonumber(f.releases or '0')
  leave_active(seq)
  redis.call('HDEL', K.job .. seq, J.token, J.lease_until_ms, J.exec_until_ms)
  set(seq, record(err, ERROR, 1, {}))
  local state, due = nil, 0
  if f.cancel_requested == '1' then
    state = 'cancelled'
  elseif err.non_retryable == '1' or counted >= tonumber(f.max_attempts) then
    state = 'dead'
  end
  if state then
    redis.call('ZADD', K[state], now, seq)
    set(seq, {[J.state] = state, [J.finished_ms] = now})
    if state == 'dead' then
      dead_add(seq, now, err)
      tally('dead')
    end
    job_event(state, seq, state, f.attempt, err)
    resolve_dependants(seq, state, now)
  else
    local delay = delay_override
    if delay < 0 then delay = backoff_delay(f, counted, rand) end
    due = now + delay
    set(seq, {[J.run_at_ms] = due})
    if delay <= 0 then
      state = 'ready'
      make_ready(seq, f.priority)
      wake()
    else
      state = 'scheduled'
      redis.call('ZADD', K.scheduled, due, seq)
      set(seq, {[J.state] = 'scheduled'})
    end
    job_event('failed', seq, state, f.attempt, err)
  end
  emit(seq, record(err, ERROR, 2,
    {[E.kind] = 'state', [E.state] = state, [E.attempt] = f.attempt}))
  return state, due
end

-- Drops pending job `seq` (ready, scheduled or waiting: in state_key(state)) whose start
-- deadline has passed: it ends expired, never leased, and its dependants resolve as for
-- a dead dependency. Watchers see a state event; queue watchers a 'cancelled' event with
-- state expired (QueueEventKind has no kind of its own).
local function expire_job(seq, state, now)
  leave_state(seq, state)
  redis.call('ZREM', K.deadlines, seq)
  redis.call('ZADD', K.expired, now, seq)
  set(seq, {[J.state] = 'expired', [J.finished_ms] = now})
  local attempt = redis.call('HGET', K.job .. seq, J.attempt) or '0'
  emit(seq, {[E.kind] = 'state', [E.state] = 'expired', [E.attempt] = attempt})
  job_event('cancelled', seq, 'expired', attempt)
  resolve_dependants(seq, 'expired', now)
end

-- The start deadline (ms) of job `seq` when it has passed at `now`, else nil.
local function overdue(seq, now)
  local deadline = redis.call('ZSCORE', K.deadlines, seq)
  if deadline and tonumber(deadline) <= now then return tonumber(deadline) end
  return nil
end

-- Hands an active job's lease back uncounted (ReleaseLease, a Fail's rate_limit_delay):
-- ready again, or scheduled after `delay` ms; `releases` grows, so the attempts that
-- count against max_attempts (attempt - releases) stay as they were. Returns state, due.
local function hand_back(seq, now, delay)
  leave_active(seq)
  redis.call('HDEL', K.job .. seq, J.token, J.lease_until_ms, J.exec_until_ms)
  redis.call('HINCRBY', K.job .. seq, J.releases, 1)
  local f = fields(seq, {'attempt', 'priority', 'worker_id'})
  worker_done(f.worker_id, now, false)
  local due = now + math.max(delay, 0)
  set(seq, {[J.run_at_ms] = due})
  local state = 'ready'
  if due > now then
    state = 'scheduled'
    redis.call('ZADD', K.scheduled, due, seq)
    set(seq, {[J.state] = state})
  else
    make_ready(seq, f.priority)
    wake()
  end
  emit(seq, {[E.kind] = 'state', [E.state] = state, [E.attempt] = f.attempt})
  job_event('released', seq, state, f.attempt)
  return state, due
end

-- Moves up to `limit` due scheduled jobs to ready. Returns how many moved.
local function promote_due(now, limit)
  local due = redis.call('ZRANGEBYSCORE', K.scheduled, '-inf', now, 'LIMIT', 0, limit)
  for _, seq in ipairs(due) do
    redis.call('ZREM', K.scheduled, seq)
    local f = fields(seq, {'priority', 'attempt'})
    make_ready(seq, f.priority)
    emit(seq, {[E.kind] = 'state', [E.state] = 'ready', [E.attempt] = f.attempt or '0'})
    job_event('ready', seq, 'ready', f.attempt)
  end
  if #due > 0 then wake() end
  return #due
end

-- Checks that `token` is the live lease of job `seq`. Returns the code and a short
-- reason, plus the job fields asked for in `keys` (J keys, see fields()) when OK.
local function check_lease(seq, token, now, keys)
  local f = fields(seq, {'state', 'token', 'lease_until_ms', unpack(keys)})
  if not f.state then return NOT_FOUND, 'job not found' end
  if f.state ~= 'active' or f.token ~= token then return LEASE_LOST, 'lease is not current' end
  if tonumber(f.lease_until_ms) <= now then return LEASE_LOST, 'lease expired' end
  return OK, '', f
end

-- Settlements that survive lost replies ------------------------------------------------
-- A Complete, Fail or ReleaseLease records its token, operation and outcome on the job;
-- the same call retried with the same token within REPLAY_MS (its first reply lost) gets
-- that outcome again instead of LEASE_LOST, and changes nothing. Only the job's last
-- settlement is kept.
local REPLAY_MS = 600000

-- Records that `token` settled job `seq` by `op` ('complete', 'fail' or 'release') with
-- `state` after it and `due` (ms, 0 when not retried).
local function remember_settlement(seq, token, op, now, state, due)
  set(seq, {[J.settled_token] = token, [J.settled_op] = op, [J.settled_ms] = now,
    [J.settled_state] = state, [J.settled_due_ms] = due or 0})
end

-- When check_lease answered `code` LEASE_LOST and `token` already settled job `seq` by
-- `op` within REPLAY_MS: the state after it and its due time, else nil.
local function replayed(code, seq, token, op, now)
  if code ~= LEASE_LOST then return nil end
  local f = fields(seq, {'settled_token', 'settled_op', 'settled_ms', 'settled_state',
    'settled_due_ms'})
  if f.settled_token ~= token or f.settled_op ~= op then return nil end
  if now - tonumber(f.settled_ms) > REPLAY_MS then return nil end
  return f.settled_state, tonumber(f.settled_due_ms)
end

-- Dependencies (docs/flows.md) ---------------------------------------------------------
--
-- A dependant (JobSpec.depends_on) is 'waiting' in `blocked`, with J.pending_dependencies
-- counting its dependencies not finished. Each dependency keeps its dependants in its
-- own queue's slot: dependants:<seq> lists their queues, dependants:<seq>:<queue> their
-- seqs. When a dependency finishes, the script that finishes it resolves its dependants
-- in the queues it has keys for, at most RESOLVE_PER_CALL per call (cascades included);
-- the rest wait in `resolve` for the maintenance loop (resolve.lua).

local X = (ARGV[5] and ARGV[5] ~= '') and cmsgpack.unpack(ARGV[5]) or {}
local QUEUE = X.queue or string.match(K.seq, '{(.*)}:seq$') or ''
local RESOLVE_PER_CALL = 50
local resolve_left = RESOLVE_PER_CALL
local key_order, other_sets = nil, nil

-- The index of queue `name`'s key set in KEYS (0: the script's own), or nil.
local function key_set(name)
  if name == (X.queue or QUEUE) then return 0 end
  if not other_sets then
    other_sets = {}
    for i, q in ipairs(X.queues or {}) do other_sets[q[1]] = i end
  end
  return other_sets[name]
end

local function can_reach(name)
  return name == QUEUE or key_set(name) ~= nil
end

-- Points K (and so every helper) at queue `name`'s keys; returns what leave() restores.
local function enter(name)
  if not name or name == QUEUE then return nil end
  local index = key_set(name)
  if not index then error('no keys given for queue ' .. name) end
  if not key_order then
    -- Built at the first enter(), while K still holds the script's own keys.
    local by_key = {}
    for field, value in pairs(K) do by_key[value] = field end
    key_order = {}
    for j = 1, X.size do key_order[j] = by_key[KEYS[j]] end
  end
  local saved = {K = {}, queue = QUEUE, history = history, added = qevents_added}
  for field, value in pairs(K) do saved.K[field] = value end
  for j = 1, X.size do K[key_order[j]] = KEYS[X.size * index + j] end
  if index == 0 then
    K.wake_channel, K.events_channel = ARGV[2], ARGV[3]
  else
    K.wake_channel, K.events_channel = X.queues[index][2], X.queues[index][3]
  end
  QUEUE, history, qevents_added = name, nil, false
  return saved
end

local function leave(saved)
  if not saved then return end
  if qevents_added then redis.call('PUBLISH', K.events_channel, 'q') end
  for field, value in pairs(saved.K) do K[field] = value end
  QUEUE, history, qevents_added = saved.queue, saved.history, saved.added
end

local function in_queue(name, fn)
  local saved = enter(name)
  fn()
  leave(saved)
end

-- Waiting job `seq` has no dependency left: ready, or scheduled until its run time.
local function release_waiting(seq, now)
  local f = fields(seq, {'priority', 'run_at_ms', 'attempt'})
  redis.call('ZREM', K.blocked, seq)
  redis.call('HDEL', K.job .. seq, J.pending_dependencies)
  local state = 'ready'
  if tonumber(f.run_at_ms or '0') > now then
    state = 'scheduled'
    redis.call('ZADD', K.scheduled, f.run_at_ms, seq)
    set(seq, {[J.state] = 'scheduled'})
  else
    make_ready(seq, f.priority)
    wake()
    job_event('ready', seq, 'ready', f.attempt)
  end
  emit(seq, {[E.kind] = 'state', [E.state] = state, [E.attempt] = f.attempt or '0'})
end

-- Waiting job `seq` goes dead: dependency `dep_id` ended `outcome` under policy FAIL.
local function fail_waiting(seq, dep_id, outcome, now)
  local attempt = redis.call('HGET', K.job .. seq, J.attempt) or '0'
  local message = 'dependency ' .. dep_id .. ' ended ' .. outcome
  if outcome == 'deleted' then message = 'dependency ' .. dep_id .. ' was deleted' end
  local dep = X.dep_error or {}
  local err = {type = 'DEPENDENCY_FAILED', message = message, non_retryable = '1',
    fingerprint = dep.fingerprint or '', template = dep.template}
  redis.call('ZREM', K.blocked, seq)
  redis.call('HDEL', K.job .. seq, J.pending_dependencies)
  redis.call('ZADD', K.dead, now, seq)
  set(seq, record(err, ERROR, 1, {[J.state] = 'dead', [J.finished_ms] = now}))
  dead_add(seq, now, err)
  emit(seq, record(err, ERROR, 2,
    {[E.kind] = 'state', [E.state] = 'dead', [E.attempt] = attempt}))
  job_event('dead', seq, 'dead', attempt, err)
end

-- Dependency `dep_id` of job `seq` (in K's queue) ended `outcome`.
local function resolve_one(seq, dep_id, outcome, now)
  local f = fields(seq, {'state', 'on_dependency_failure'})
  if f.state ~= 'waiting' then return end  -- cancelled, deleted or already dead
  if outcome == 'completed' or f.on_dependency_failure == '2' then
    if redis.call('HINCRBY', K.job .. seq, J.pending_dependencies, -1) <= 0 then
      release_waiting(seq, now)
    end
  else
    fail_waiting(seq, dep_id, outcome, now)
    resolve_dependants(seq, 'dead', now)
  end
end

-- Job `seq` of K's queue ended `outcome` ('completed', 'dead', 'cancelled', 'expired' or
-- 'deleted'): resolves its dependants, as many as this call may; the rest are left in
-- `resolve` under '<seq>|<outcome>'.
resolve_dependants = function(seq, outcome, now)
  local base = K.dependants .. seq
  -- The queues of its dependants: a few, read at most 16 at a time (as store.py does).
  local queues = redis.call('SRANDMEMBER', base, 16)
  if #queues == 0 then return end
  local id, rest = QUEUE .. ':' .. seq, redis.call('SCARD', base) > #queues
  for _, q in ipairs(queues) do
    local members = base .. ':' .. q
    if resolve_left > 0 and can_reach(q) then
      local seqs = redis.call('SPOP', members, resolve_left)
      resolve_left = resolve_left - #seqs
      if redis.call('EXISTS', members) == 0 then
        redis.call('SREM', base, q)
      else
        rest = true
      end
      in_queue(q, function()
        for _, d in ipairs(seqs) do resolve_one(d, id, outcome, now) end
      end)
    else
      rest = true
    end
  end
  local member = seq .. '|' .. outcome
  if rest then
    redis.call('ZADD', K.resolve, 'NX', now, member)
  else
    redis.call('ZREM', K.resolve, member)
  end
end

-- Makes new job `seq` (stored, in K's queue) wait for `deps` ({queue, seq} maps, all
-- existing or just created). Returns nil when none is left to wait for (the caller makes
-- it ready or scheduled), else 'waiting', or 'dead' when one failed under policy FAIL.
local function wait_for(seq, deps, now)
  local ignore = redis.call('HGET', K.job .. seq, J.on_dependency_failure) == '2'
  local me, pending, ids = QUEUE, 0, {}
  for _, d in ipairs(deps) do ids[#ids + 1] = d.queue .. ':' .. d.seq end
  set(seq, {[J.depends_on] = table.concat(ids, ' ')})
  local failed = nil
  for _, d in ipairs(deps) do
    in_queue(d.queue, function()
      local dep = tostring(d.seq)
      local state = redis.call('HGET', K.job .. dep, J.state)
      if state == 'completed' then return end
      if not state or state == 'dead' or state == 'cancelled' or state == 'expired' then
        if not ignore then failed = failed or {QUEUE .. ':' .. dep, state or 'deleted'} end
        return
      end
      pending = pending + 1
      redis.call('SADD', K.dependants .. dep, me)
      redis.call('SADD', K.dependants .. dep .. ':' .. me, seq)
    end)
  end
  if failed then
    fail_waiting(seq, failed[1], failed[2], now)
    return 'dead'
  end
  if pending == 0 then return nil end
  redis.call('ZADD', K.blocked, now, seq)
  set(seq, {[J.state] = 'waiting', [J.pending_dependencies] = pending})
  return 'waiting'
end

-- The first dependency of `jobs` (enqueue.lua's list) named by id that does not exist:
-- its field name, or nil. Refs to jobs of the same call are not checked: they will.
local function missing_dependency(jobs)
  for _, job in ipairs(jobs) do
    for _, d in ipairs(job.deps or {}) do
      if not d.ref then
        local found = false
        in_queue(d.queue, function()
          found = redis.call('EXISTS', K.job .. tostring(d.seq)) == 1
        end)
        if not found then return d.field end
      end
    end
  end
  return nil
end
