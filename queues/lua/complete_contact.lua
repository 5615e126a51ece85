-- complete_contact: the agent finished the conversation. With wrap-up time the contact is
-- wrapping until timer "w|<contact>" ends it; without, it completes and the agent's capacity
-- frees at once (and the agent takes its next contact).
-- KEYS[1]  tenant key prefix "sb:{tenant}:"
-- ARGV[1]  now (ms)
-- ARGV[2]  contact id
-- ARGV[3]  acting agent id ('' when an admin acts for the assigned agent)
-- ARGV[4]  wrap-up (ms, 0 for none)
-- ARGV[5]  disposition ('' for none)
-- ARGV[6]  how long the contact is kept once it has ended (s; '0': for good): see keep_ended
-- Returns [code, payload, events]:
--   OK  {contact = contact_out, handle = ms from accept to complete}
--   CONTACT_NOT_FOUND | CONTACT_NOT_ASSIGNED | NOT_YOUR_CONTACT
local now, cid, aid, wrap = tonumber(ARGV[1]), ARGV[2], ARGV[3], tonumber(ARGV[4])
local c = load_contact(cid)
if not c then return finish(E.CONTACT_NOT_FOUND) end
if c.st ~= 'assigned' then return finish(E.CONTACT_NOT_ASSIGNED) end
if aid ~= '' and c.agent ~= aid then return finish(E.NOT_YOUR_CONTACT) end

local handle = now - tonumber(redis.call('HGET', K.contact(cid), 'ans'))
count(c.queue, now, 'handled')
count(c.queue, now, 'handle_ms', handle)
redis.call('HSET', K.contact(cid), 'disp', ARGV[5])
if wrap > 0 then
  -- (the agent is busy until wrap-up ends: the estimated wait counts it)
  count(c.queue, now, 'wrap_ms', wrap)
  redis.call('HSET', K.contact(cid), 'st', 'wrapping')
  set_timer(now + wrap, 'w|' .. cid)
  emit({t = 'contact', c = cid, s = 'wrapping'})
else
  close_contact(c, now, ARGV[6])
  emit({t = 'contact', c = cid, s = 'completed'})
end
return finish(E.OK, '{"contact":' .. contact_out(cid) .. ',"handle":' .. fmt('%d', handle) ..
                     '}')
