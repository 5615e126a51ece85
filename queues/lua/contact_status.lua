-- contact_status (read only): a contact's live state, position and staffing.
-- KEYS[1]  tenant key prefix "sb:{tenant}:"
-- ARGV[1]  contact id
-- Returns [code, payload, events]:
--   OK  {contact = contact_out}
--   CONTACT_NOT_FOUND
local out = contact_out(ARGV[1])
if not out then return finish(E.CONTACT_NOT_FOUND) end
return finish(E.OK, '{"contact":' .. out .. '}')
