-- replace_view: a waiting or offered contact's view becomes `new`, if it is still `old` (a
-- callback's note or the contact's end since it was read leaves it as it is).
-- KEYS[1]  tenant key prefix "sb:{tenant}:"
-- ARGV[1]  contact id
-- ARGV[2]  the view as read (read_view)
-- ARGV[3]  the new view
-- Returns [code, payload, events]:
--   OK  {replaced = bool}
local f = redis.call('HMGET', K.contact(ARGV[1]), 'st', 'view')
if (f[1] ~= 'queued' and f[1] ~= 'offered') or f[2] ~= ARGV[2] then
  return finish(E.OK, '{"replaced":false}')
end
redis.call('HSET', K.contact(ARGV[1]), 'view', ARGV[3])
return finish(E.OK, '{"replaced":true}')
