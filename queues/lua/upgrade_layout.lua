-- upgrade_layout: brings a tenant's data to the layout these scripts keep (LAYOUT), once; every
-- instance runs it at startup, before serving. Idempotent: a tenant already at the layout is
-- left alone, and each step counts from the agents' records rather than adjusting counters.
-- KEYS[1]  tenant key prefix "sb:{tenant}:"
-- Returns [code, payload, events]:
--   OK  {from = layout found (0: none recorded), to = the layout now, agents = how many agents
--        were counted (0 when there was nothing to upgrade)}
local LAYOUT = 1
local from = tonumber(redis.call('GET', K.layout()) or '0')
if from >= LAYOUT then
  return finish(E.OK, fmt('{"from":%d,"to":%d,"agents":0}', from, from))
end

-- Layout 1: each queue's staffing is one hash keyed by its members' capacities
-- (q:<queue>:staffing, see staff_field), in place of the counter q:<queue>:staffed and the
-- per-channel counts q:<queue>:on; and every queue has q:<queue>:chans. All three are counted
-- afresh from the agents (one pass over them: this runs once per tenant).
local agents, cleared = {}, {}
for _, aid in ipairs(redis.call('SMEMBERS', K.agents())) do
  local f = redis.call('HMGET', K.agent(aid), 'st', 'prof')
  if f[1] and f[2] then
    local prof = cjson.decode(f[2])
    agents[#agents + 1] = {f[1], prof[1], prof[2], staff_field(f[2])}
    for _, q in ipairs(prof[2]) do
      if not cleared[q] then
        cleared[q] = true
        redis.call('DEL', K.queue_staffing(q), K.queue_staffed(q), K.queue_signed_in(q),
                   K.queue_channels(q))
      end
    end
  end
end
for _, a in ipairs(agents) do
  local by, field = staffing(a[1]), a[4]
  for _, q in ipairs(a[3]) do
    if by ~= 0 then redis.call('HINCRBY', K.queue_staffing(q), field, fmt('%d', by)) end
    for ch, n in pairs(a[2]) do
      redis.call('HINCRBY', K.queue_channels(q), ch, n > 0 and '1' or '0')
    end
  end
end
redis.call('SET', K.layout(), LAYOUT)
return finish(E.OK, fmt('{"from":%d,"to":%d,"agents":%d}', from, LAYOUT, #agents))
