-- customer_history (read only): a customer's profile and their last contacts, newest first,
-- each as it stands now.
-- KEYS[1]  tenant key prefix "sb:{tenant}:"
-- ARGV[1]  customer id
-- ARGV[2]  how many contacts
-- Returns [code, payload, events]:
--   OK  {doc = profile JSON or false, contacts = [{doc, st, ch, queue, agent, disp}]}
local cid = ARGV[1]
return finish(E.OK, {doc = redis.call('HGET', K.customer(cid), 'doc') or false,
                     contacts = history_out(cid, tonumber(ARGV[2]))})
