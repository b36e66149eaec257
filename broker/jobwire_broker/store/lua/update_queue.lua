-- update_queue.lua: changes a queue's settings: sets some fields, removes others (which
-- then inherit the broker's defaults). Jobs read them when enqueued (enqueue.lua), and
-- retention when pruned (prune.lua).
-- KEYS: the queue key set (lib.lua); uses settings.
-- ARGS: {set = map of settings field -> encoded value, clear = list of settings fields}
-- Returns: {} 
-- Codes: 0 OK

local now = now_ms()
for _, name in ipairs(ARGS.clear) do redis.call('HDEL', K.settings, name) end
for name, value in pairs(ARGS.set) do redis.call('HSET', K.settings, name, value) end
return finish({}, now)
