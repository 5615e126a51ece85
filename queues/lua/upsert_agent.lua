-- upsert_agent: create or update an agent's profile, capacity and queue membership (computed
-- by the caller from the queues' agent expressions). A new agent is offline. Pending offers the
-- change leaves invalid (from a queue it left, over its new capacity, blocked by a channel made
-- exclusive) are rescinded: their contacts go back in line and look for other agents.
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
-- names: the queue names as given (replies show them so); uniq: each once (prof's, which the
-- staffing counters count once per queue)
local keep, names, uniq = {}, {}, {}
for _, m in ipairs(qs) do
  if not keep[m[1]] then uniq[#uniq + 1] = m[1] end
  keep[m[1]] = true
  names[#names + 1] = m[1]
end
-- the agent's state counts in the staffing counters of its queues (see staff_field): out of the
-- queues it leaves, into those it joins, and from its old capacity's field to its new one's
local cap = cjson.decode(ARGV[4])
local count_in, had = staffing(ag.st), {}
local was_field, field = ag.pj and staff_field(ag.pj) or '{}', ARGV[4]
local moved = was_field ~= field
for _, q in ipairs(ag.qn) do
  had[q] = true
  for ch, _ in pairs(ag.cap) do redis.call('ZREM', K.queue_free(q, ch), aid) end
  if not keep[q] then redis.call('SREM', K.queue_members(q), aid) end
  if count_in ~= 0 and (moved or not keep[q]) then
    redis.call('HINCRBY', K.queue_staffing(q), was_field, fmt('%d', -count_in))
  end
end
if count_in ~= 0 then
  for _, q in ipairs(uniq) do
    if moved or not had[q] then
      redis.call('HINCRBY', K.queue_staffing(q), field, fmt('%d', count_in))
    end
  end
end
-- q:<queue>:chans counts, per channel, the queue's members with capacity on it (whatever their
-- state; a channel with capacity 0 is written as 0, so the hash lists every channel its members
-- name): out of its old queues with its old capacity, into its new ones with the new
for _, q in ipairs(ag.qn) do
  for ch, n in pairs(ag.cap) do
    redis.call('HINCRBY', K.queue_channels(q), ch, n > 0 and '-1' or '0')
  end
end
for _, q in ipairs(uniq) do
  for ch, n in pairs(cap) do
    redis.call('HINCRBY', K.queue_channels(q), ch, n > 0 and '1' or '0')
  end
end
local excl = cjson.decode(ARGV[6])
-- the channels made exclusive by this change (those that were already could block nothing
-- pending: an offer is made only when they do not)
local gained = {}
if ag.of ~= '' then
  local was_excl = set_of(ag.excl or {})
  for _, x in ipairs(excl) do
    if not was_excl[x] then gained[#gained + 1] = x end
  end
end
ag.cap, ag.qs, ag.qn, ag.excl = cap, qs, uniq, excl
local rescinded = rescind_invalid(ag, gained, now)
-- prof: what most transitions need of the profile, in one field (see load_agent)
local qj, uj = '[]', '[]'
if #names > 0 then qj = cjson.encode(names) end
if #uniq == #names then uj = qj elseif #uniq > 0 then uj = cjson.encode(uniq) end
ag.pj = '[' .. ARGV[4] .. ',' .. uj .. (ARGV[6] == '[]' and ']' or ',' .. ARGV[6] .. ']')
redis.call('HSET', K.agent(aid), 'doc', ARGV[3], 'st', ag.st, 'cap', ARGV[4], 'qs', ARGV[5],
           'qj', qj, 'prof', ag.pj,
           'load', cjson.encode(ag.load), 'idle', fmt('%d', ag.idle), 'of', ag.of)
for _, q in ipairs(names) do redis.call('SADD', K.queue_members(q), aid) end
refresh_free(ag)
if ag.st == 'available' then match_agent(ag, now) end
-- the contacts of the rescinded offers go back in line with their places (the agent stored: a
-- step that waited for it alone is passed) once the agent has taken what waits in its queues
-- now, and look for agents with the contacts moved on below, best first
for _, c in ipairs(rescinded) do requeue(c, now) end
-- contacts waiting for it by name on a channel it no longer has capacity on: a step nobody
-- else can answer moves on
if ag.tw ~= '0' then
  local lost = {}
  for _, ch in ipairs(CAPACITY_CHANNELS) do
    if (cap[ch] or 0) == 0 then lost[#lost + 1] = ch end
  end
  leave_agent_lines(aid, lost, now, rescinded)
end
if rescinded[1] then match_best_first(rescinded, now) end
return finish(E.OK, '{"agent":' .. agent_out(aid) .. ',"created":' .. tostring(created) .. '}')
