-- agent_offers (read only): an agent's pending offers with the agent's view of each contact,
-- sent again to an agent whose socket reconnects.
-- KEYS[1]  tenant key prefix "sb:{tenant}:"
-- ARGV[1]  agent id
-- Returns [code, payload, events]:
--   OK  {offers = [{r = reservation id, c = contact id, x = expiry (ms), q = queue,
--                   view = the contact's view JSON}]}
--   AGENT_NOT_FOUND
local aid = ARGV[1]
local ag = load_agent(aid, true)
if not ag then return finish(E.AGENT_NOT_FOUND) end
local out = {}
for _, rid in ipairs(cjson.decode('[' .. ag.of .. ']')) do
  local r = redis.call('HMGET', K.reservation(rid), 'c', 'x', 'q', 'st')
  if r[1] and r[4] == 'pending' then
    out[#out + 1] = {r = rid, c = r[1], x = tonumber(r[2]), q = r[3],
                     view = redis.call('HGET', K.contact(r[1]), 'view') or '{}'}
  end
end
return finish(E.OK, {offers = out})
