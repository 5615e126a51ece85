-- set_agent_state: available | away (offline is agent_offline.lua, which rescinds the pending
-- offers). Available takes the best waiting contacts at once; pending offers stay.
-- KEYS[1]  tenant key prefix "sb:{tenant}:"
-- ARGV[1]  now (ms)
-- ARGV[2]  agent id
-- ARGV[3]  new state: available | away
-- Returns [code, payload, events]:
--   OK  {agent = agent_out, changed = bool}
--   AGENT_NOT_FOUND
local now, aid, state = ARGV[1] + 0, ARGV[2], ARGV[3]
local ag = load_agent(aid, true)
if not ag then return finish(E.AGENT_NOT_FOUND) end
if ag.st == state then
  return finish(E.OK, '{"agent":' .. agent_out(aid, ag) .. ',"changed":false}')
end

local was = free_channels(ag)
set_agent_state(ag, state)
if state == 'available' then ag.idle = now end
-- available: it takes the best waiting contacts first, so its free sets are written once (and
-- its state event, after the offers, carries the load they take)
if state == 'available' then match_agent(ag, now, true) end
emit_state(ag)
save_agent(ag)
refresh_free(ag, was)
return finish(E.OK, '{"agent":' .. agent_out(aid, ag) .. ',"changed":true}')
