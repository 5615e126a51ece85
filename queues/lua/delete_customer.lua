-- delete_customer: erase a customer (an erasure request, GDPR art. 17). Its profile goes, every
-- identity it owns is released (only where the identities hash still names it), its contact
-- history goes, and so does every placeholder merged into it (a hash holding only 'to' = this
-- customer: see upsert_customer) with that placeholder's own history list. Refused, changing
-- nothing, while one of its contacts is live (queued, offered, assigned, wrapping): such a
-- contact's view carries the sender's number or address and the profile to an agent, and its
-- routing is under way. Its ended contacts (those its history lists, and those of the
-- placeholders merged into it) stay, for the queues' figures and GET /v1/contacts/{id}, with
-- every link to the customer cut: 'cust' (which threads and replays follow), 'cb' (a callback's
-- number) and any 'view' go, and the document's customer becomes {id = null, the segment it
-- was routed in, value = 0}.
-- The placeholders forwarded to it are those its 'merged' field lists (upsert_customer writes
-- it at each takeover), each checked again, and every customer a contact of the history was
-- recorded under that forwards to it.
-- KEYS[1]  tenant key prefix "sb:{tenant}:"
-- ARGV[1]  customer id
-- Returns [code, payload, events]:
--   OK                          {contacts = ended contacts unlinked, released = identities
--                                released, placeholders = the forwards removed (absent when
--                                none)}
--   CUSTOMER_NOT_FOUND          no profile under that id (never written, deleted, or a
--                               placeholder taken over: a forward alone)
--   CUSTOMER_HAS_LIVE_CONTACTS  {live = how many, contacts = their ids, newest first, joined
--                               by ','}; nothing changed
local cid = ARGV[1]
local f = redis.call('HMGET', K.customer(cid), 'doc', 'ids', 'merged')
if not f[1] then return finish(E.CUSTOMER_NOT_FOUND) end

local forwards, is_forward = {}, {}
local function forward(x)
  if x and x ~= cid and not is_forward[x] and redis.call('HGET', K.customer(x), 'to') == cid then
    is_forward[x] = true
    forwards[#forwards + 1] = x
  end
end
for _, x in ipairs(f[3] and cjson.decode(f[3]) or {}) do forward(x) end

-- The contacts of the customer's history, then of each forward's (a contact resolved to a
-- placeholder just before the takeover and recorded just after is in the placeholder's own
-- list), each once; a contact recorded under a placeholder not yet known adds that one.
local LIVE = {queued = true, offered = true, assigned = true, wrapping = true}
local contacts, seen, live = {}, {}, {}
local function read_history(owner)
  for _, id in ipairs(redis.call('LRANGE', K.customer_history(owner), 0, -1)) do
    if not seen[id] then
      seen[id] = true
      local c = redis.call('HMGET', K.contact(id), 'st', 'cust', 'doc')
      if c[1] then
        contacts[#contacts + 1] = {id = id, doc = c[3]}
        if LIVE[c[1]] then live[#live + 1] = id end
        forward(c[2])
      end
    end
  end
end
read_history(cid)
local i = 1
while i <= #forwards do
  read_history(forwards[i])
  i = i + 1
end
if #live > 0 then
  return finish(E.CUSTOMER_HAS_LIVE_CONTACTS,
                {live = #live, contacts = table.concat(live, ',')})
end

local released = 0
for _, ident in ipairs(f[2] and cjson.decode(f[2]) or {}) do
  if redis.call('HGET', K.identities(), ident) == cid then
    redis.call('HDEL', K.identities(), ident)
    released = released + 1
  end
end

-- The document's customer ({"id": ..., "segment": ..., "value": ...}, written by the service
-- with no object inside) becomes anonymous; the rest of the document stays as stored.
local function unlinked(doc)
  local s, e = find(doc, '"customer":%b{}')
  if not s then return doc end
  local ok, brief = pcall(cjson.decode, sub(doc, s + 11, e))
  local segment = ok and type(brief) == 'table' and brief.segment
  if type(segment) ~= 'string' then segment = '' end
  return sub(doc, 1, s + 10) .. '{"id":null,"segment":' .. cjson.encode(segment) ..
         ',"value":0.0}' .. sub(doc, e + 1)
end
for _, c in ipairs(contacts) do
  redis.call('HDEL', K.contact(c.id), 'cust', 'cb', 'view')
  redis.call('HSET', K.contact(c.id), 'doc', unlinked(c.doc))
end

redis.call('DEL', K.customer(cid), K.customer_history(cid))
for _, x in ipairs(forwards) do redis.call('DEL', K.customer(x), K.customer_history(x)) end
return finish(E.OK, {contacts = #contacts, released = released,
                     placeholders = #forwards > 0 and forwards or nil})
