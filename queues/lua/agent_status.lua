-- agent_status (read only): an agent's state, load, queues and pending offers.
-- KEYS[1]  tenant key prefix "sb:{tenant}:"
-- ARGV[1]  agent id
-- Returns [code, payload, events]:
--   OK  {agent = agent_out}
--   AGENT_NOT_FOUND
local out = agent_out(ARGV[1])
if not out then return finish(E.AGENT_NOT_FOUND) end
return finish(E.OK, '{"agent":' .. out .. '}')
