-- ready_heads.lua: when the job next in line in each of a queue's first 32 priorities
-- became ready, for the age of the oldest ready job. Reads only.
-- KEYS: the queue key set (lib.lua); uses ready, job:.
-- ARGS: {} (unused)
-- Returns: {now (ms), oldest (the earliest of those times, ms), or -1 when none is ready}
-- Codes: 0 OK

local BAND = 1099511627776  -- 2^40: ready scores are (1000 - priority) * 2^40 + seq
local now = now_ms()
local oldest, low = -1, '-inf'
for _ = 1, 32 do
  local head = redis.call('ZRANGEBYSCORE', K.ready, low, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
  if not head[1] then break end
  local since = tonumber(redis.call('HGET', K.job .. head[1], J.run_at_ms) or now)
  if oldest < 0 or since < oldest then oldest = since end
  low = string.format('%.0f', (math.floor(tonumber(head[2]) / BAND) + 1) * BAND)
end
return finish({now = now, oldest = oldest}, now)
