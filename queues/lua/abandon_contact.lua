-- abandon_contact: the customer left while waiting, or while offered (the offer is rescinded
-- and the agent takes its next contact); or, with why 'cancelled', the gateway withdrew it.
-- KEYS[1]  tenant key prefix "sb:{tenant}:"
-- ARGV[1]  now (ms)
-- ARGV[2]  contact id
-- ARGV[3]  why: 'abandoned' (counted against the service level) or 'cancelled' (not counted)
-- ARGV[4]  how long the ended contact is kept (s; '0': for good): see keep_ended
-- Returns [code, payload, events]:
--   OK                  {contact = contact_out, changed = bool, wait = ms, short = bool}
--   CONTACT_NOT_FOUND | CONTACT_NOT_WAITING (already assigned, wrapping, completed, or ended
--                       the other way)
local now, cid, why = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local c = load_contact(cid)
if not c then return finish(E.CONTACT_NOT_FOUND) end
if c.st == why then
  return finish(E.OK, '{"contact":' .. contact_out(cid) ..
                       ',"changed":false,"wait":0,"short":false}')
end
local ag = nil
if c.st == 'offered' then
  local rid, was = c.res, nil
  c, ag, was = end_offer(rid, 'rescinded', now)
  save_agent(ag)
  refresh_free(ag, was)
  emit({t = 'rescind', a = ag.id, r = rid, c = cid, why = why})
elseif c.st == 'queued' then
  if c.hold > 0 then remove_held(c) else remove_waiting(c) end
else
  return finish(E.CONTACT_NOT_WAITING)
end

redis.call('HSET', K.contact(cid), 'st', why, 'ended', now, 'agent', '', 'res', '')
-- (what an ended contact does not keep: see close_contact)
redis.call('HDEL', K.contact(cid), 'view', 'cb', 'steps', 'cur', 'key')
keep_ended(cid, ARGV[4])
redis.call('ZREM', K.timers(), step_timer(c), 'b|' .. cid)
forget_declines(c)
local wait = now - c.enq
local short = wait < c.slt
if why == 'abandoned' then
  count(c.queue, now, 'abandoned')
  if short then count(c.queue, now, 'abandoned_short') end
else
  count(c.queue, now, 'cancelled')
end
emit({t = 'contact', c = cid, s = why})
if ag then match_agent(ag, now) end
return finish(E.OK, '{"contact":' .. contact_out(cid) .. ',"changed":true,"wait":' ..
                     fmt('%d', wait) .. ',"short":' .. tostring(short) .. '}')
