-- list_contacts (read only): the contacts in line for some queues and agents, for a config
-- reload's check of the workflows still under way (read_workflows reads them).
-- KEYS[1]  tenant key prefix "sb:{tenant}:"
-- ARGV[1]  queue names (JSON list): the contacts waiting in each (its age set, whatever the
--          channel) and held there for a callback (its held set)
-- ARGV[2]  agent ids (JSON list): the contacts waiting for each by name, on every channel
-- ARGV[3]  '1': every scheduled callback too (timers "b|<contact>": one held at a step that
--          names agents alone is in no queue's held set); '0': not
-- Returns [code, payload, events]:
--   OK  {contacts = [contact id]}  (in no order; one in several lines is listed once for each)
local out = {}
for _, q in ipairs(cjson.decode(ARGV[1])) do
  for _, cid in ipairs(redis.call('ZRANGE', K.queue_age(q), '0', '-1')) do out[#out + 1] = cid end
  for _, cid in ipairs(redis.call('ZRANGE', K.queue_held(q), '0', '-1')) do out[#out + 1] = cid end
end
for _, aid in ipairs(cjson.decode(ARGV[2])) do
  for _, ch in ipairs(CAPACITY_CHANNELS) do
    -- (members "<sort key>|<id>": see add_waiting)
    for _, member in ipairs(redis.call('ZRANGE', K.agent_waiting(aid, ch), '0', '-1')) do
      out[#out + 1] = sub(member, find(member, '|', 1, true) + 1)
    end
  end
end
if ARGV[3] == '1' then
  for _, member in ipairs(redis.call('ZRANGE', K.timers(), '0', '-1')) do
    if sub(member, 1, 2) == 'b|' then out[#out + 1] = sub(member, 3) end
  end
end
return finish(E.OK, {contacts = out})
