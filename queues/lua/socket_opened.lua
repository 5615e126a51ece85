-- socket_opened: an instance opened a socket of the agent and now holds n of them. The count is
-- set, not added to, so the same call twice changes nothing. The instance is heard from: it is
-- live until now + timeout (instance_seen). The agent's state does not change.
-- KEYS[1]  tenant key prefix "sb:{tenant}:"
-- ARGV[1]  now (ms)
-- ARGV[2]  agent id
-- ARGV[3]  instance id
-- ARGV[4]  sockets of the agent the instance holds (>= 1)
-- ARGV[5]  instance timeout (ms)
-- Returns [code, payload, events]:
--   OK  {known = bool (the instance had a record before), offline = []}
--   AGENT_NOT_FOUND  (nothing changes)
local now, aid, inst = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local n, timeout = tonumber(ARGV[4]), tonumber(ARGV[5])
if redis.call('HEXISTS', K.agent(aid), 'st') == 0 then return finish(E.AGENT_NOT_FOUND) end
local known = instance_seen(inst, now, timeout)
if n < 1 then n = 1 end
set_sockets(aid, inst, n)
return finish(E.OK, '{"known":' .. tostring(known) .. ',"offline":[]}')
