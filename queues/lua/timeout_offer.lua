-- timeout_offer (timer "o|<reservation>"): an offer went unanswered past its lease. The
-- contact goes back with its place in line, the agent is set away (missed), and the contact
-- looks for another agent.
-- KEYS[1]  tenant key prefix "sb:{tenant}:"
-- ARGV[1]  now (ms)
-- ARGV[2]  reservation id
-- Returns [code, payload, events]:
--   OK  {fired = bool, contact_id?, agent_id?}  (not fired: no longer pending, or not yet due)
local now, rid = tonumber(ARGV[1]), ARGV[2]
local r = redis.call('HMGET', K.reservation(rid), 'st', 'x')
if r[1] ~= 'pending' then
  redis.call('ZREM', K.timers(), 'o|' .. rid)
  return finish(E.OK, {fired = false})
end
if now < tonumber(r[2]) then return finish(E.OK, {fired = false}) end

local c, ag, was = end_offer(rid, 'timeout', now)
set_agent_state(ag, 'away')
save_agent(ag)
refresh_free(ag, was)
emit({t = 'rescind', a = ag.id, r = rid, c = c.id, why = 'timeout'})
emit_state(ag)
requeue(c, now)
match_contact(c, now)
return finish(E.OK, {fired = true, contact_id = c.id, agent_id = ag.id})
