-- agent_offline: set_agent_state to offline. Pending offers are rescinded: their contacts go
-- back in line and look for other agents, best first, as do the contacts that waited for this
-- agent alone (a last_agent or preferred_agents step nobody else can answer moves on).
-- KEYS[1]  tenant key prefix "sb:{tenant}:"
-- ARGV[1]  now (ms)
-- ARGV[2]  agent id
-- Returns [code, payload, events]:
--   OK  {agent = agent_out, changed = bool}
--   AGENT_NOT_FOUND
local now, aid = tonumber(ARGV[1]), ARGV[2]
local ag = load_agent(aid, true)
if not ag then return finish(E.AGENT_NOT_FOUND) end
if ag.st == 'offline' then
  return finish(E.OK, '{"agent":' .. agent_out(aid, ag) .. ',"changed":false}')
end

go_offline(ag, now)
return finish(E.OK, '{"agent":' .. agent_out(aid, ag) .. ',"changed":true}')
