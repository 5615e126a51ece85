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
  ag = {id = aid, st = 'offline', cap = {}, load = {}, qs = {}, excl = {}, idle = now}
  redis.call('SADD', K.agents(), aid)
end
local memberships = cjson.decode(ARGV[5])
local keep = {}
for _, m in ipairs(memberships) do keep[m[1]] = true end
for _, m in ipairs(ag.qs) do
  for ch, _ in pairs(ag.cap) do redis.call('ZREM', K.queue_free(m[1], ch), aid) end
  if not keep[m[1]] then
    redis.call('SREM', K.queue_members(m[1]), aid)
    redis.call('SREM', K.queue_staffed(m[1]), aid)
    redis.call('SREM', K.queue_available(m[1]), aid)
  end
end
ag.cap, ag.qs, ag.excl = cjson.decode(ARGV[4]), memberships, cjson.decode(ARGV[6])
redis.call('HSET', K.agent(aid), 'doc', ARGV[3], 'st', ag.st, 'cap', ARGV[4],
           'load', cjson.encode(ag.load), 'qs', ARGV[5], 'excl', ARGV[6], 'idle', ag.idle)
for _, m in ipairs(ag.qs) do redis.call('SADD', K.queue_members(m[1]), aid) end
set_agent_state(ag, ag.st)
refresh_free(ag)
if ag.st == 'available' then match_agent(ag, now) end
return finish(E.OK, {agent = agent_out(aid), created = created})
