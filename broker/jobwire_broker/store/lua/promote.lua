-- promote.lua: moves scheduled jobs whose time has come to ready and wakes waiters.
-- KEYS: the queue key set (lib.lua); uses ready, scheduled, waiting, job:, events:.
-- ARGV[1..3]: now override, wake channel, events channel (lib.lua)
-- ARGV[4]  the most jobs to move in this call
-- Returns: the number of jobs moved
-- Codes: 0 OK

return promote_due(now_ms(), tonumber(ARGV[4]))
