-- scan.lua: reads a stretch of one of a queue's sorted sets in its order, from a
-- position on, and returns what matches: a page of ListJobs or ListDeadLetterGroups,
-- the next jobs a bulk operation will change, or a count. Changes nothing.
-- A position is a (score, member) pair of the set's order (ties on score ordered by
-- member, bytewise, as Redis orders them), not an index, so members entering or leaving
-- the set between calls shift nothing: the next call goes on strictly after it.
-- KEYS: the queue key set (lib.lua); uses scheduled, ready, active, completed, dead,
--       cancelled, job:, dlgroups, dlg:, dlgmeta:.
-- ARGS: {set = a job state's name ('dead', ...) or 'dlgroups' (the dead-letter groups),
--        group = a fingerprint: read its dead-letter group's set instead (dead jobs,
--                scored as in dead); '' or absent: none,
--        reverse (bool: newest first; not with through),
--        after = {score, member}: start strictly after it; absent: at the start,
--        through = {score, member}: stop after it (member absent: after every member at
--                that score); absent: at the end,
--        filter = {error_type, header_key, header_value, fingerprint} ('' or absent:
--                 any), jobs only,
--        want = the most matches to return,
--        examine = the most members to look at (0: none, for `last` and `now`),
--        mode = 'jobs' (whole jobs), 'positions' (their positions), 'groups' (groups)
--               or 'count' (how many match),
--        payloads (bool: with mode 'jobs', keep payload and result),
--        max_bytes = with mode 'jobs' or 'groups', end before the answer would pass
--                    about this many bytes (always one at least, unless may_be_empty),
--        may_be_empty (bool: with max_bytes, return no item rather than one past it;
--                      for the second and later reads of one page)}
-- Returns: {items = list of {score, fields = flat field/value list} ('jobs'),
--           {score, seq} ('positions') or {score, fingerprint, error_type, template,
--           count, first_ms, last_ms, sample_seq, sample_message} ('groups'),
--           matched = matches found (all modes), examined = members looked at,
--           bytes = about how many bytes the items take (max_bytes' measure),
--           next = {score, member} of the last member looked at when more follow (the
--                  next call's `after`), or {} when this call reached the end,
--           last = {score, member} of the set's last member, or {} when empty,
--           now = Redis time (ms)}
-- Codes: 0 OK

local now = now_ms()
local CHUNK = 500
local FIELD_BYTES = 8  -- what a reply spends on a field beyond its name and value

local key
if ARGS.set == 'dlgroups' then
  key = K.dlgroups
elseif ARGS.group and ARGS.group ~= '' then
  key = K.dlg .. ARGS.group
else
  key = state_key(ARGS.set)
end

-- Whether string a sorts before b bytewise (Lua's `<` follows the server's locale).
local function bytes_less(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

-- How many members come strictly before position (score, member), and whether the
-- member is still there (1) or not (0). The member still at that score: its rank. Else
-- a binary search among the members tied at that score (by rank: each probe O(log N)).
local function place(score, member)
  if member == nil then
    return redis.call('ZCOUNT', key, '-inf', score), 0
  end
  local at = redis.call('ZSCORE', key, member)
  if at and tonumber(at) == tonumber(score) then
    return redis.call('ZRANK', key, member), 1
  end
  local first = redis.call('ZCOUNT', key, '-inf', '(' .. score)
  local lo, hi = 0, redis.call('ZCOUNT', key, score, score)
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    local probe = redis.call('ZRANGE', key, first + mid, first + mid)[1]
    if bytes_less(probe, member) then lo = mid + 1 else hi = mid end
  end
  return first + lo, 0
end

local filter = ARGS.filter
local wanted, plain_key = {}, nil
if filter then
  for name, field_key in pairs({error_type = 'error_type', fingerprint = 'error_fingerprint',
      header_key = 'headers'}) do
    if (filter[name] or '') ~= '' then wanted[#wanted + 1] = field_key end
  end
  -- A key JSON writes as it is (printable ASCII, no quote or backslash) can be looked
  -- for in the stored text before decoding it: most jobs then cost no decode.
  local k = filter.header_key or ''
  if k ~= '' and not string.find(k, '[^\32-\126]') and not string.find(k, '["\\]') then
    plain_key = '"' .. k .. '"'
  end
end

local function matches(seq)
  if not filter then return true end
  local f = fields(seq, wanted)
  if (filter.error_type or '') ~= '' and f.error_type ~= filter.error_type then
    return false
  end
  if (filter.fingerprint or '') ~= '' and f.error_fingerprint ~= filter.fingerprint then
    return false
  end
  if (filter.header_key or '') ~= '' then
    local text = f.headers or '{}'
    if plain_key and not string.find(text, plain_key, 1, true) then return false end
    local ok, headers = pcall(cjson.decode, text)
    local value = ok and type(headers) == 'table' and headers[filter.header_key]
    if type(value) ~= 'string' then return false end
    if (filter.header_value or '') ~= '' and value ~= filter.header_value then
      return false
    end
  end
  return true
end

local SKIPPED = {[J.payload] = true, [J.result] = true}
local function job_item(seq, score)
  local flat = redis.call('HGETALL', K.job .. seq)
  if #flat == 0 then return nil, 0 end
  local out, bytes = {}, 0
  for i = 1, #flat, 2 do
    if ARGS.payloads or not SKIPPED[flat[i]] then
      out[#out + 1] = flat[i]
      out[#out + 1] = flat[i + 1]
      bytes = bytes + #flat[i] + #flat[i + 1] + FIELD_BYTES
    end
  end
  return {score = score, fields = out}, bytes
end

local function group_item(fp, score)
  local members = K.dlg .. fp
  local count = redis.call('ZCARD', members)
  if count == 0 then return nil, 0 end
  local first = redis.call('ZRANGE', members, 0, 0, 'WITHSCORES')
  local last = redis.call('ZREVRANGE', members, 0, 0, 'WITHSCORES')
  local meta = redis.call('HMGET', K.dlgmeta .. fp, G.error_type, G.template)
  local message = redis.call('HGET', K.job .. last[1], J.error_message) or ''
  local item = {score = score, fingerprint = fp, error_type = meta[1] or '',
    template = meta[2] or '', count = count, first_ms = tonumber(first[2]),
    last_ms = tonumber(last[2]), sample_seq = last[1], sample_message = message}
  return item, #fp + #item.error_type + #item.template + #message + 16 * FIELD_BYTES
end

local total = redis.call('ZCARD', key)
local tail = redis.call('ZREVRANGE', key, 0, 0, 'WITHSCORES')
local last = {}
if #tail > 0 then last = {score = tail[2], member = tail[1]} end

-- The stretch to read, as indexes [from, to) of the set's order (reversed: of ZREVRANGE).
local from, to = 0, total
if ARGS.after then
  local before, here = place(ARGS.after.score, ARGS.after.member)
  from = ARGS.reverse and (total - before) or (before + here)
end
if ARGS.through then
  local before, here = place(ARGS.through.score, ARGS.through.member)
  to = before + here
end

local mode, want, budget = ARGS.mode, ARGS.want, ARGS.max_bytes or 0
local items, matched, examined, bytes = {}, 0, 0, 0
local stop = math.min(to, from + ARGS.examine)
local last_score, last_member, full = nil, nil, false
if mode == 'count' and not filter then
  -- Every member matches: the count is the stretch's length.
  examined = math.max(stop - from, 0)
  matched = examined
  if examined > 0 then
    local at = redis.call('ZRANGE', key, stop - 1, stop - 1, 'WITHSCORES')
    last_score, last_member = at[2], at[1]
  end
else
  while from + examined < stop and not full do
    -- Unfiltered, every member read is taken: read no more than the matches wanted.
    local n = CHUNK
    if not filter and mode ~= 'count' then n = math.min(CHUNK, math.max(want - matched, 1)) end
    local i = from + examined
    local j = math.min(stop, i + n) - 1
    local range = ARGS.reverse and 'ZREVRANGE' or 'ZRANGE'
    local chunk = redis.call(range, key, i, j, 'WITHSCORES')
    if #chunk == 0 then break end
    for c = 1, #chunk, 2 do
      local member, score = chunk[c], chunk[c + 1]
      if mode == 'groups' or matches(member) then
        local item, size = nil, 0
        if mode == 'jobs' then
          item, size = job_item(member, score)
        elseif mode == 'groups' then
          item, size = group_item(member, score)
        elseif mode == 'positions' then
          item = {score = score, seq = member}
        else
          matched = matched + 1
        end
        if item then
          if (#items > 0 or ARGS.may_be_empty) and budget > 0 and bytes + size > budget then
            full = true
            break
          end
          bytes = bytes + size
          items[#items + 1] = item
          matched = matched + 1
        end
      end
      examined = examined + 1
      last_score, last_member = score, member
      if mode ~= 'count' and matched >= want then
        full = true
        break
      end
    end
  end
end

local next_position = {}
if last_member and from + examined < to then
  next_position = {score = last_score, member = last_member}
elseif not last_member and ARGS.after and from < to then
  next_position = ARGS.after  -- looked at nothing (want 0): still there
end
return finish({items = items, matched = matched, examined = examined, bytes = bytes,
  next = next_position, last = last, now = now}, now)
