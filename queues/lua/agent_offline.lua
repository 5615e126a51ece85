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

local was = free_channels(ag)
local requeued = {}
local offers = cjson.decode('[' .. ag.of .. ']')
table.sort(offers, str_lt)
for _, rid in ipairs(offers) do
  local c = end_offer(rid, 'rescinded', now, ag)
  emit({t = 'rescind', a = aid, r = rid, c = c.id, why = 'agent_offline'})
  requeued[#requeued + 1] = c
end
set_agent_state(ag, 'offline')
emit_state(ag)
save_agent(ag)
refresh_free(ag, was)
-- (back in line once the agent is stored offline: a step waiting for it alone is passed)
for _, c in ipairs(requeued) do requeue(c, now) end
if ag.tw ~= '0' then leave_agent_lines(aid, CAPACITY_CHANNELS, now, requeued) end
match_best_first(requeued, now)
return finish(E.OK, '{"agent":' .. agent_out(aid, ag) .. ',"changed":true}')
