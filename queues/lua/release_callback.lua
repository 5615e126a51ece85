-- release_callback (timer "b|<contact>"): a scheduled callback is due; it rejoins the line
-- with its original sort key and is offered at once if an agent is free.
-- KEYS[1]  tenant key prefix "sb:{tenant}:"
-- ARGV[1]  now (ms)
-- ARGV[2]  contact id
-- Returns [code, payload, events]:
--   OK  {fired = bool}
local now, cid = tonumber(ARGV[1]), ARGV[2]
redis.call('ZREM', K.timers(), 'b|' .. cid)
local c = load_contact(cid)
if not c or c.st ~= 'queued' or c.hold == 0 then return finish(E.OK, {fired = false}) end
c.hold = 0
redis.call('HSET', K.contact(cid), 'hold', 0)
add_waiting(c)
match_contact(c, now)
return finish(E.OK, {fired = true})
