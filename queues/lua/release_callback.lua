-- release_callback (timer "b|<contact>"): a scheduled callback is due; it rejoins the line
-- with its original sort key and is offered at once if an agent is free. Its wait (speed of
-- answer, service level, the queue's oldest wait) counts from the time it was due: the hours
-- the customer chose to wait for the call are not a wait for an agent.
-- KEYS[1]  tenant key prefix "sb:{tenant}:"
-- ARGV[1]  now (ms)
-- ARGV[2]  contact id
-- Returns [code, payload, events]:
--   OK  {fired = bool}  (not fired: contact gone or no longer held, or held until later)
local now, cid = tonumber(ARGV[1]), ARGV[2]
local c = load_contact(cid)
if c and c.st == 'queued' and c.hold > now then
  -- a stale claim: the callback was rescheduled since; its timer keeps the new due time
  return finish(E.OK, {fired = false})
end
redis.call('ZREM', K.timers(), 'b|' .. cid)
if not c or c.st ~= 'queued' or c.hold == 0 then return finish(E.OK, {fired = false}) end
remove_held(c)
if c.hold > c.enq then c.enq, c.enq_s = c.hold, fmt('%d', c.hold) end
c.hold = 0
redis.call('HSET', K.contact(cid), 'hold', 0, 'enq', c.enq_s)
add_waiting(c)
leave_dead_step(c, now)
match_contact(c, now)
return finish(E.OK, {fired = true})
