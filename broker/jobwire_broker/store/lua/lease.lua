-- lease.lua: leases up to n ready jobs, best priority first, FIFO within a priority,
-- and no more than fit in a reply of max_bytes. Due scheduled jobs are promoted first,
-- so a delayed job never waits for maintenance.
-- KEYS: the queue key set (lib.lua); uses ready, scheduled, active, waiting, job:, events:.
-- ARGV[1..3]: now override, wake channel, events channel (lib.lua)
-- ARGV[4]  n, the most jobs to lease
-- ARGV[5]  token prefix, random per call; job i gets token prefix .. i
-- ARGV[6]  when no job is ready: ms to keep the waiting flag set (0: do not set it)
-- ARGV[7]  max_bytes: the most bytes of jobs the reply may carry (reply_bytes below)
-- Returns: {ms until the next scheduled job is due, or -1;
--           seq of the first ready job when it alone exceeds max_bytes (nothing is
--           leased then), or 0; that job's reply_bytes, or 0;
--           job 1, job 2, ...} where each job is its hash as a flat field/value list
-- Codes: 0 OK

-- Room for a job's bounded fields in a reply (id, queue, content type, idempotency
-- key, error type, options, times, token): together under 1.5 KiB.
local FIXED_BYTES = 2048

-- An upper bound of the bytes job `jk` takes in a Lease reply, read before leasing it.
-- Stored JSON is never shorter than its protobuf form, except progress details, whose
-- Struct encoding takes up to ~6 bytes per JSON byte (a list of one-digit numbers).
local function reply_bytes(jk)
  local n = FIXED_BYTES + 6 * redis.call('HSTRLEN', jk, 'pdet')
  for _, field in ipairs({'payload', 'headers', 'trace', 'emsg', 'pmsg'}) do
    n = n + redis.call('HSTRLEN', jk, field)
  end
  return n
end

local now = now_ms()
promote_due(now, 1000)
local seqs = redis.call('ZRANGE', K.ready, 0, tonumber(ARGV[4]) - 1)
local budget = tonumber(ARGV[7])
local out = {-1, 0, 0}
for i, seq in ipairs(seqs) do
  local jk = K.job .. seq
  local size = reply_bytes(jk)
  if size > budget then
    if i == 1 then out[2], out[3] = tonumber(seq), size end
    break
  end
  budget = budget - size
  redis.call('ZREM', K.ready, seq)
  local f = redis.call('HMGET', jk, 'lease_ms', 'exec_ms')
  local attempt = redis.call('HINCRBY', jk, 'att', 1)
  local deadline = now + tonumber(f[1])
  local exec_until = 0
  if tonumber(f[2]) > 0 then
    exec_until = now + tonumber(f[2])
    if deadline > exec_until then deadline = exec_until end
  end
  redis.call('HSET', jk, 'state', 'active', 'token', ARGV[5] .. i,
    'lease_until', deadline, 'exec_until', exec_until, 'started', now)
  redis.call('ZADD', K.active, deadline, seq)
  emit(seq, {'k', 'state', 's', 'active', 'a', attempt})
  out[#out + 1] = redis.call('HGETALL', jk)
end
if #seqs == 0 then
  if tonumber(ARGV[6]) > 0 then
    redis.call('SET', K.waiting, '1', 'PX', ARGV[6])
  end
  local first = redis.call('ZRANGE', K.scheduled, 0, 0, 'WITHSCORES')
  if first[2] then out[1] = math.max(0, tonumber(first[2]) - now) end
end
return out
