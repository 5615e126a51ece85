-- request_callback: virtual hold. The waiting contact becomes a callback (a voice contact for
-- the agent) that keeps its place in line; with not_before in the future it leaves the line
-- until timer "b|<contact>" puts it back with its original sort key.
-- KEYS[1]  tenant key prefix "sb:{tenant}:"
-- ARGV[1]  now (ms)
-- ARGV[2]  contact id
-- ARGV[3]  number to call back ('' to use the contact's own)
-- ARGV[4]  not before (ms; <= now for as soon as possible)
-- Returns [code, payload, events]:
--   OK  {contact = contact_out}
--   CONTACT_NOT_FOUND | CONTACT_NOT_WAITING
--   CALLBACK_UNAVAILABLE  nobody could make the call (see can_call_back); nothing changed
local now, cid, not_before = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[4])

-- Whether someone step s sends the contact to could make a voice call: a member of one of its
-- queues with voice capacity (q:<queue>:chans, whatever their state: an agent away or signed
-- out may come back), or an agent it names with voice capacity.
local function voice_reachable(s)
  for _, q in ipairs(s.q) do
    local able = redis.call('HGET', K.queue_channels(q), 'voice')
    if able and able + 0 > 0 then return true end
  end
  if s.a then
    for _, aid in ipairs(s.a) do
      local prof = redis.call('HGET', K.agent(aid), 'prof')
      if prof and (cjson.decode(prof)[1].voice or 0) > 0 then return true end
    end
  end
  return false
end

-- Whether the callback could ever be made: by the contact's current step, or by a later one
-- (it moves on to those while it waits, held or not). The steps are read only when the
-- current one cannot.
local function can_call_back(c)
  if voice_reachable(c.s) then return true end
  local steps = cjson.decode(redis.call('HGET', K.contact(c.id), 'steps'))
  for i = c.step + 2, #steps do
    if voice_reachable(steps[i]) then return true end
  end
  return false
end

local c = load_contact(cid)
if not c then return finish(E.CONTACT_NOT_FOUND) end
if c.st ~= 'queued' then return finish(E.CONTACT_NOT_WAITING) end
if not can_call_back(c) then return finish(E.CALLBACK_UNAVAILABLE) end

if c.hold > 0 then remove_held(c) else remove_waiting(c) end
c.cc = 'voice'
redis.call('HSET', K.contact(cid), 'ch', 'callback', 'cc', 'voice', 'cb', ARGV[3])
-- The agent's offer says to call back, and which number (null: the contact's own). The view
-- is the JSON the service wrote, which opens with the contact: the note goes first in it,
-- replacing the note of an earlier request.
local view = redis.call('HGET', K.contact(cid), 'view')
local head = '{"contact":{'
if view and sub(view, 1, #head) == head then
  local rest = sub(view, #head + 1)
  local old = string.match(rest, '^"callback":%b{},')
  if old then rest = sub(rest, #old + 1) end
  local number = ARGV[3] == '' and 'null' or cjson.encode(ARGV[3])
  redis.call('HSET', K.contact(cid), 'view',
             head .. '"callback":{"number":' .. number .. '},' .. rest)
end
if not_before > now then
  c.hold = not_before
  redis.call('HSET', K.contact(cid), 'hold', not_before)
  add_held(c)
  set_timer(not_before, 'b|' .. cid)
  -- (a voice call now: a step's agents without voice capacity cannot make it)
  leave_dead_step(c, now)
else
  c.hold = 0
  redis.call('HSET', K.contact(cid), 'hold', 0)
  redis.call('ZREM', K.timers(), 'b|' .. cid)
  add_waiting(c)
  leave_dead_step(c, now)
  match_contact(c, now)
end
return finish(E.OK, '{"contact":' .. contact_out(cid) .. '}')
