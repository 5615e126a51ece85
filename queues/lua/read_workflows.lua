-- read_workflows (read only): the queues contacts under way may still wait in, those their
-- current step and the steps after it name (a step's timeout moves a contact on into the next
-- step's queues), for a config reload's check that it removes none of them.
-- KEYS[1]  tenant key prefix "sb:{tenant}:"
-- ARGV[1]  contact ids (JSON list)
-- Returns [code, payload, events]:
--   OK  {contacts = [[contact id, [queue]]]}: each contact given that is queued (held for a
--       callback or not) or on offer, its queues in workflow order, each once; the others
--       are left out
local out = {}
for _, cid in ipairs(cjson.decode(ARGV[1])) do
  local f = redis.call('HMGET', K.contact(cid), 'st', 'step', 'steps')
  if (f[1] == 'queued' or f[1] == 'offered') and f[3] then
    local steps, seen, queues = cjson.decode(f[3]), {}, {}
    for i = (f[2] or 0) + 1, #steps do
      for _, q in ipairs(steps[i].q) do
        if not seen[q] then
          seen[q] = true
          queues[#queues + 1] = q
        end
      end
    end
    out[#out + 1] = {cid, queues}
  end
end
return finish(E.OK, {contacts = out})
