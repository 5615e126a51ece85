-- end_wrapup (timer "w|<contact>"): after-contact work is over; the contact completes and the
-- agent's capacity frees (the agent takes its next contact).
-- KEYS[1]  tenant key prefix "sb:{tenant}:"
-- ARGV[1]  now (ms)
-- ARGV[2]  contact id
-- ARGV[3]  how long the contact is kept once it has ended (s; '0': for good): see keep_ended
-- Returns [code, payload, events]:
--   OK  {fired = bool}
local now, cid = tonumber(ARGV[1]), ARGV[2]
redis.call('ZREM', K.timers(), 'w|' .. cid)
local c = load_contact(cid)
if not c or c.st ~= 'wrapping' then return finish(E.OK, {fired = false}) end
close_contact(c, now, ARGV[3])
emit({t = 'contact', c = cid, s = 'completed'})
return finish(E.OK, {fired = true})
