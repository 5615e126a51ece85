-- upsert_agent: create or update an agent's profile, capacity and queue membership (computed
-- by the caller from the queues' agent expressions). A new agent is offline.
-- KEYS[1]  tenant key prefix "sb:{tenant}:"
-- ARGV[1]  now (ms)
-- ARGV[2]  agent id
-- ARGV[3]  agent document (JSON: name, skills, attributes)
-- ARGV[4]  capacity (JSON {channel: max concurrent contacts})
-- ARGV[5]  memberships (JSON list of [queue, strategy, skill level])
-- ARGV[6]  exclusive channels (JSON list: a contact on one blocks other offers)
-- Returns [code, payload, events]:
--   OK  {agent = agent_out, created = bool}
local now, aid = tonumber(ARGV[1]), ARGV[2]
local ag = load_agent(aid)
local created = ag == nil
if created then
  ag = {id = aid, st = 'offline', cap = {}, load = {}, qn = {}, excl = {}, idle = now, tw = '0',
        of = ''}
  redis.call('SADD', K.agents(), aid)
end
local qs = cjson.decode(ARGV[5])
local keep, names = {}, {}
for _, m in ipairs(qs) do
  keep[m[1]] = true
  names[#names + 1] = m[1]
end
for _, q in ipairs(ag.qn) do
  for ch, _ in pairs(ag.cap) do redis.call('ZREM', K.queue_free(q, ch), aid) end
  if not keep[q] then
    redis.call('SREM', K.queue_members(q), aid)
    redis.call('SREM', K.queue_staffed(q), aid)
    redis.call('SREM', K.queue_available(q), aid)
  end
end
ag.cap, ag.qs, ag.qn, ag.excl = cjson.decode(ARGV[4]), qs, names, cjson.decode(ARGV[6])
-- prof: what most transitions need of the profile, in one field (see load_agent)
local qj = '[]'
if #names > 0 then qj = cjson.encode(names) end
redis.call('HSET', K.agent(aid), 'doc', ARGV[3], 'st', ag.st, 'cap', ARGV[4], 'qs', ARGV[5],
           'qj', qj, 'prof', '[' .. ARGV[4] .. ',' .. ARGV[6] .. ',' .. qj .. ']',
           'load', cjson.encode(ag.load), 'idle', ag.idle)
for _, q in ipairs(names) do redis.call('SADD', K.queue_members(q), aid) end
set_agent_state(ag, ag.st)
refresh_free(ag)
if ag.st == 'available' then match_agent(ag, now) end
return finish(E.OK, '{"agent":' .. agent_out(aid) .. ',"created":' .. tostring(created) .. '}')
