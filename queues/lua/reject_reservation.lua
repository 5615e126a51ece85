-- reject_reservation: the agent declines the offer. The contact goes back with its place in
-- line and is not offered to this agent again; both then look for a new match.
-- KEYS[1]  tenant key prefix "sb:{tenant}:"
-- ARGV[1]  now (ms)
-- ARGV[2]  reservation id
-- ARGV[3]  acting agent id ('' when an admin acts for the reserved agent)
-- Returns [code, payload, events]:
--   OK  {contact_id = id}
--   RESERVATION_NOT_FOUND | NOT_YOUR_RESERVATION | RESERVATION_NOT_PENDING | RESERVATION_EXPIRED
local now, rid, aid = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local r = redis.call('HMGET', K.reservation(rid), 'c', 'a', 'st', 'x')
if not r[1] then return finish(E.RESERVATION_NOT_FOUND) end
if aid ~= '' and r[2] ~= aid then return finish(E.NOT_YOUR_RESERVATION) end
if r[3] ~= 'pending' then return finish(E.RESERVATION_NOT_PENDING) end
if now >= tonumber(r[4]) then return finish(E.RESERVATION_EXPIRED) end

local c, ag, was = end_offer(rid, 'rejected', now)
c.decl[#c.decl + 1] = ag.id
redis.call('HSET', K.contact(c.id), 'decl', cjson.encode(c.decl))
redis.call('SADD', K.agent_declined(ag.id), c.id)
requeue(c, now)
save_agent(ag)
refresh_free(ag, was)
match_contact(c, now)
match_agent(ag, now)
return finish(E.OK, {contact_id = c.id})
