-- schedule_delete.lua: deletes a schedule's record. Jobs it fired stay.
-- KEYS: the queue key set (lib.lua); uses schedules, schedule:.
-- ARGS: {name}
-- Returns: {found (bool)}
-- Codes: 0 OK

redis.call('ZREM', K.schedules, ARGS.name)
return cmsgpack.pack({found = redis.call('DEL', K.schedule .. ARGS.name) == 1})
