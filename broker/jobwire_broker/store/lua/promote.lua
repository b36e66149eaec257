-- promote.lua: moves scheduled jobs whose time has come to ready and wakes waiters.
-- KEYS: the queue key set (lib.lua); uses ready, scheduled, waiting, job:, events:,
--       qevents.
-- ARGS: {limit = the most jobs to move in this call}
-- Returns: {moved = the number of jobs moved}
-- Codes: 0 OK

local now = now_ms()
return finish({moved = promote_due(now, ARGS.limit)}, now)
