-- list_agents (read only): every agent's id and document, to recompute queue membership.
-- KEYS[1]  tenant key prefix "sb:{tenant}:"
-- Returns [code, payload, events]:
--   OK  {agents = [[id, doc, capacity JSON]]}
local ids = redis.call('SMEMBERS', K.agents())
table.sort(ids, str_lt)
local out = {}
for _, aid in ipairs(ids) do
  local f = redis.call('HMGET', K.agent(aid), 'doc', 'cap')
  out[#out + 1] = {aid, f[1], f[2]}
end
return finish(E.OK, {agents = out})
