-- schedule_put.lua: creates or changes a schedule's record (pause and resume included).
-- KEYS: the queue key set (lib.lua); uses schedules, schedule:.
-- ARGS: {name, create (true: the record must not exist; false: it must),
--        set = map of record field -> value, clear = list of record fields to delete,
--        due_ms = its next tick (ms), or -1 to leave it out of the due set (paused, or no
--        tick ever again)}
-- Returns: {done (bool: false when create found the record, or an update did not),
--           version (the record's after the call)}
-- Codes: 0 OK

local rec = K.schedule .. ARGS.name
local exists = redis.call('EXISTS', rec) == 1
if exists == ARGS.create then return cmsgpack.pack({done = false, version = 0}) end
local now = now_ms()
local args = {'HSET', rec, SC.update_ms, now}
if ARGS.create then
  args[#args + 1] = SC.create_ms
  args[#args + 1] = now
end
for name, value in pairs(ARGS.set) do
  args[#args + 1] = name
  args[#args + 1] = value
end
redis.call(unpack(args))
if #ARGS.clear > 0 then redis.call('HDEL', rec, unpack(ARGS.clear)) end
local version = redis.call('HINCRBY', rec, SC.version, 1)
if ARGS.due_ms >= 0 then
  redis.call('ZADD', K.schedules, ARGS.due_ms, ARGS.name)
else
  redis.call('ZREM', K.schedules, ARGS.name)
end
return cmsgpack.pack({done = true, version = version})
