-- agent_offline: set_agent_state to offline. Pending offers are rescinded: their contacts go
-- back in line and look for other agents, best first.
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

local was = free_channels(ag)
local requeued = {}
local offers = cjson.decode('[' .. ag.of .. ']')
table.sort(offers, str_lt)
for _, rid in ipairs(offers) do
  local c = end_offer(rid, 'rescinded', now, ag)
  emit({t = 'rescind', a = aid, r = rid, c = c.id, why = 'agent_offline'})
  requeue(c)
  requeued[#requeued + 1] = c
end
set_agent_state(ag, 'offline')
emit_state(ag)
save_agent(ag)
refresh_free(ag, was)
-- best first: each agent must receive the best contact it may take, not the first rescinded
table.sort(requeued, function(a, b)
  return a.key < b.key or (a.key == b.key and str_lt(a.id, b.id))
end)
for _, c in ipairs(requeued) do match_contact(c, now) end
return finish(E.OK, '{"agent":' .. agent_out(aid, ag) .. ',"changed":true}')
