-- read_view (read only): the agent's view of a contact that still waits or is on offer (the
-- JSON an offer carries), for refreshing it when the customer's profile changes.
-- KEYS[1]  tenant key prefix "sb:{tenant}:"
-- ARGV[1]  contact id
-- Returns [code, payload, events]:
--   OK  {view = the view JSON as text, or false when the contact is gone or past waiting}
local f = redis.call('HMGET', K.contact(ARGV[1]), 'st', 'view')
if (f[1] ~= 'queued' and f[1] ~= 'offered') or not f[2] then
  return finish(E.OK, '{"view":false}')
end
return finish(E.OK, '{"view":' .. cjson.encode(f[2]) .. '}')
