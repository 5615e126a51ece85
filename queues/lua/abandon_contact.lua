-- abandon_contact: the customer left while waiting, or while offered (the offer is rescinded
-- and the agent takes its next contact).
-- KEYS[1]  tenant key prefix "sb:{tenant}:"
-- ARGV[1]  now (ms)
-- ARGV[2]  contact id
-- Returns [code, payload, events]:
--   OK                  {contact = contact_out, changed = bool, wait = ms, short = bool}
--   CONTACT_NOT_FOUND | CONTACT_NOT_WAITING (already assigned, wrapping or completed)
local now, cid = tonumber(ARGV[1]), ARGV[2]
local c = load_contact(cid)
if not c then return finish(E.CONTACT_NOT_FOUND) end
if c.st == 'abandoned' then
  return finish(E.OK, '{"contact":' .. contact_out(cid) ..
                       ',"changed":false,"wait":0,"short":false}')
end
local ag = nil
if c.st == 'offered' then
  local rid, was = c.res, nil
  c, ag, was = end_offer(rid, 'rescinded', now)
  save_agent(ag)
  refresh_free(ag, was)
  emit({t = 'rescind', a = ag.id, r = rid, c = cid, why = 'abandoned'})
elseif c.st == 'queued' then
  remove_waiting(c)
else
  return finish(E.CONTACT_NOT_WAITING)
end

redis.call('HSET', K.contact(cid), 'st', 'abandoned', 'ended', now, 'agent', '', 'res', '')
redis.call('HDEL', K.contact(cid), 'view')
redis.call('ZREM', K.timers(), step_timer(c), 'b|' .. cid)
forget_declines(c)
local wait = now - c.enq
local short = wait < c.slt
count(c.queue, now, 'abandoned')
if short then count(c.queue, now, 'abandoned_short') end
emit({t = 'contact', c = cid, s = 'abandoned'})
if ag then match_agent(ag, now) end
return finish(E.OK, '{"contact":' .. contact_out(cid) .. ',"changed":true,"wait":' ..
                     fmt('%d', wait) .. ',"short":' .. tostring(short) .. '}')
