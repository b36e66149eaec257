-- enqueue.lua: adds jobs to a queue as ready or scheduled, honouring idempotency keys.
-- KEYS: the queue key set (lib.lua); uses seq, ready, scheduled, waiting, job:, idem:.
-- ARGV[1..3]: now override, wake channel, events channel (lib.lua)
-- ARGV[4]  queue name (for job ids)
-- ARGV[5]  n, the number of jobs; then 13 ARGV per job, in this order:
--          payload, content type, headers (JSON), priority, delay ms, run-at ms (0 none),
--          max attempts, backoff spec, lease ms, execution timeout ms (0 none),
--          idempotency key ("" none), idempotency window ms, trace context (JSON)
-- Returns: per job {seq, duplicate (0/1), state}
-- Codes: 0 OK

local now = now_ms()
local n = tonumber(ARGV[5])
local out, woke = {}, false
for i = 0, n - 1 do
  local a = 6 + i * 13
  local idem = ARGV[a + 10]
  local existing = idem ~= '' and redis.call('GET', K.idem .. idem)
  if existing then
    local state = redis.call('HGET', K.job .. existing, 'state') or 'completed'
    out[#out + 1] = {tonumber(existing), 1, state}
  else
    local seq = redis.call('INCR', K.seq)
    local run_at = now + tonumber(ARGV[a + 4])
    if tonumber(ARGV[a + 5]) > run_at then run_at = tonumber(ARGV[a + 5]) end
    local state = run_at > now and 'scheduled' or 'ready'
    redis.call('HSET', K.job .. seq,
      'id', ARGV[4] .. ':' .. seq, 'state', state,
      'payload', ARGV[a], 'ctype', ARGV[a + 1], 'headers', ARGV[a + 2],
      'prio', ARGV[a + 3], 'max_att', ARGV[a + 6], 'backoff', ARGV[a + 7],
      'lease_ms', ARGV[a + 8], 'exec_ms', ARGV[a + 9], 'idem', idem,
      'trace', ARGV[a + 12], 'att', 0, 'created', now, 'run_at', run_at)
    if state == 'ready' then
      redis.call('ZADD', K.ready, ready_score(ARGV[a + 3], seq), seq)
      woke = true
    else
      redis.call('ZADD', K.scheduled, run_at, seq)
    end
    if idem ~= '' then
      redis.call('SET', K.idem .. idem, seq, 'PX', ARGV[a + 11])
    end
    out[#out + 1] = {seq, 0, state}
  end
end
if woke then wake() end
return out
