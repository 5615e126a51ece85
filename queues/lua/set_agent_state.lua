-- set_agent_state: available | away | offline. Available takes the best waiting contacts at
-- once; offline rescinds pending offers (their contacts go back in line and look for others,
-- best first).
-- KEYS[1]  tenant key prefix "sb:{tenant}:"
-- ARGV[1]  now (ms)
-- ARGV[2]  agent id
-- ARGV[3]  new state
-- Returns [code, payload, events]:
--   OK  {agent = agent_out, changed = bool}
--   AGENT_NOT_FOUND
local now, aid, state = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local ag = load_agent(aid, true)
if not ag then return finish(E.AGENT_NOT_FOUND) end
if ag.st == state then
  return finish(E.OK, '{"agent":' .. agent_out(aid, ag) .. ',"changed":false}')
end

local was = free_channels(ag)
local requeued = {}
if state == 'offline' then
  local offers = cjson.decode('[' .. ag.of .. ']')
  table.sort(offers, str_lt)
  for _, rid in ipairs(offers) do
    local c = end_offer(rid, 'rescinded', now, ag)
    emit({t = 'rescind', a = aid, r = rid, c = c.id, why = 'agent_offline'})
    requeue(c)
    requeued[#requeued + 1] = c
  end
end
set_agent_state(ag, state)
if state == 'available' then ag.idle = now end
emit_state(ag)
-- available: it takes the best waiting contacts first, so its free sets are written once
if state == 'available' then match_agent(ag, now, true) end
save_agent(ag)
refresh_free(ag, was)
-- best first: each agent must receive the best contact it may take, not the first rescinded
table.sort(requeued, function(a, b)
  return a.key < b.key or (a.key == b.key and str_lt(a.id, b.id))
end)
for _, c in ipairs(requeued) do match_contact(c, now) end
return finish(E.OK, '{"agent":' .. agent_out(aid, ag) .. ',"changed":true}')
