-- advance_step (timer "s|<contact>|<step>"): the contact waited out a workflow step and moves
-- to the next one (its targets replace the step's), keeping its place in line; on past any step
-- nobody can answer (leave_dead_step).
-- KEYS[1]  tenant key prefix "sb:{tenant}:"
-- ARGV[1]  now (ms)
-- ARGV[2]  contact id
-- ARGV[3]  the step (0-based) the timer was set for
-- Returns [code, payload, events]:
--   OK  {fired = bool, step = new step}  (not fired: contact gone, answered, or already moved)
local now, cid, idx = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
redis.call('ZREM', K.timers(), 's|' .. cid .. '|' .. idx)
local c = load_contact(cid)
if not c or c.step ~= idx or (c.st ~= 'queued' and c.st ~= 'offered') then
  return finish(E.OK, {fired = false, step = -1})
end
local steps = cjson.decode(redis.call('HGET', K.contact(cid), 'steps'))
if c.step + 1 >= #steps then return finish(E.OK, {fired = false, step = -1}) end

local waiting = c.st == 'queued' and c.hold == 0
local held = c.st == 'queued' and c.hold > 0
if waiting then remove_waiting(c) end
if held then remove_held(c) end
c.step = c.step + 1
local s = steps[c.step + 1]
c.s = s
-- (an offered contact keeps the queue that offered it: an accept counts there)
if s.q[1] and c.st ~= 'offered' then c.queue = s.q[1] end
redis.call('HSET', K.contact(cid), 'step', c.step, 'queue', c.queue, 'cur', cjson.encode(s))
if held then add_held(c) end
if waiting then add_waiting(c) end
-- (a step nobody can answer is passed at once, and the timer is the step's it stops at)
if not ((waiting or held) and leave_dead_step(c, now)) and s.t > 0 then
  set_timer(now + s.t, step_timer(c))
end
if waiting then match_contact(c, now) end
return finish(E.OK, {fired = true, step = c.step})
