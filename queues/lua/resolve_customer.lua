-- resolve_customer: the customer an identity (normalised phone, email or chat handle) belongs
-- to, creating a new customer for an unknown sender. Atomic, so two first contacts from the
-- same new sender at once become one customer. A customer made here is marked 'made' =
-- 'sender' (a placeholder under a generated id, which a profile PUT claiming its identity
-- takes over: see upsert_customer) or 'named' (under an id the gateway gave: the CRM's own).
-- A placeholder taken over keeps only 'to', the customer it was merged into: a thread, a
-- replay or a gateway naming its id is led there.
-- KEYS[1]  tenant key prefix "sb:{tenant}:"
-- ARGV[1]  identity ('' when the contact names only a customer id)
-- ARGV[2]  customer id given by the gateway ('' for none)
-- ARGV[3]  id for a new customer (used only if the identity is unknown, or if the customer id
--          the gateway gave is: it is then that id)
-- ARGV[4]  new customer's profile document (JSON)
-- ARGV[5]  how many recent contacts to return
-- ARGV[6]  message ids this message replies to, oldest first (JSON list of hashed ids): the
--          newest one known names the thread's contact, whose customer and agent it joins
-- ARGV[7]  this message's hashed id ('' for none), remembered for replies to it
-- ARGV[8]  the contact id this message becomes
-- ARGV[9]  the contact's idempotency key ('' for none) and ARGV[10] its body hash: a request
--          that will be refused as a conflicting replay must not create a customer first, and
--          a replay resolves to the customer of the contact it replays, creating nothing (its
--          sender may have left that customer since, by a profile PUT)
-- Returns [code, payload, events]:
--   IDEMPOTENCY_CONFLICT  {first = the contact first created with this key}; nothing changed
--   OK  {id = customer id ('' for none), created = bool, doc = profile JSON or false,
--        contacts = history_out(id, n), thread_agent = agent of the thread ('' if none)}
local ident, given, fresh, n = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[5])
local named = given  -- the id the gateway gave (a thread may give one below)
-- The customer an id stands for now: itself, or the one a placeholder was merged into.
local function current(id)
  if id == '' then return id end
  return redis.call('HGET', K.customer(id), 'to') or id
end
if ARGV[9] ~= '' then
  local prev = redis.call('GET', K.idempotency(ARGV[9]))
  if prev then
    local sep = string.find(prev, '|', 1, true)
    local first = string.sub(prev, sep + 1)
    if string.sub(prev, 1, sep - 1) ~= ARGV[10] then
      return finish(E.IDEMPOTENCY_CONFLICT, {first = first})
    end
    local cust = current(redis.call('HGET', K.contact(first), 'cust') or '')
    local doc = cust ~= '' and redis.call('HGET', K.customer(cust), 'doc')
    return finish(E.OK, {id = cust, created = false, doc = doc or false,
                         contacts = history_out(cust, n), thread_agent = ''})
  end
end
local thread_agent = ''
local refs = cjson.decode(ARGV[6])
for i = #refs, 1, -1 do
  local cid = redis.call('HGET', K.messages(), refs[i])
  local f = cid and redis.call('HMGET', K.contact(cid), 'cust', 'agent')
  if f and f[1] then
    if given == '' then given = current(f[1]) end
    thread_agent = f[2] or ''
    break
  end
end
if ARGV[7] ~= '' then redis.call('HSETNX', K.messages(), ARGV[7], ARGV[8]) end
-- The sender's identity in the profile's phones, emails or chat_handles, as PUT takes them (a
-- web chat handle bare): the doc is the JSON the service wrote, so the value goes first in
-- that list, or a new list goes first in the doc.
local FIELDS = {phone = 'phones', email = 'emails', chat = 'chat_handles'}
local function listed(doc)
  local kind, value = string.match(ident, '^(%a+):(.*)$')
  local field = FIELDS[kind]
  if not field then return doc end
  if kind == 'chat' and sub(value, 1, 4) == 'web:' then value = sub(value, 5) end
  local item = cjson.encode(value)
  local _, e = string.find(doc, '"' .. field .. '"%s*:%s*%[')
  if e then
    local empty = string.find(doc, '^%s*%]', e + 1)
    return sub(doc, 1, e) .. item .. (empty and '' or ',') .. sub(doc, e + 1)
  elseif sub(doc, 1, 1) == '{' then
    local bare = string.find(doc, '^%s*}', 2)
    return '{"' .. field .. '":[' .. item .. ']' .. (bare and '' or ',') .. sub(doc, 2)
  end
  return doc
end
-- An identity that joins a known customer (a thread's reply from another address, a contact
-- naming its customer) is the customer's own from then on: on its profile, and in 'ids', so
-- that a profile PUT without it releases it.
local function join(cid, doc)
  local ids = redis.call('HGET', K.customer(cid), 'ids')
  local list = ids and cjson.decode(ids) or {}
  list[#list + 1] = ident
  doc = listed(doc)
  redis.call('HSET', K.customer(cid), 'doc', doc, 'ids', cjson.encode(list))
  return doc
end
local function found(id, created, doc)
  return finish(E.OK, {id = id, created = created, doc = doc or false,
                       contacts = history_out(id, n), thread_agent = thread_agent})
end
if given ~= '' then
  local f = redis.call('HMGET', K.customer(given), 'doc', 'to')
  local doc = f[1]
  if f[2] then
    given = f[2]
    doc = redis.call('HGET', K.customer(given), 'doc')
  end
  if not doc and given == named then
    -- a customer the gateway names and this store has not heard of (the CRM's id, before any
    -- PUT): made now under that id (ARGV[3] and ARGV[4] then carry it), owning the sender's
    -- identity unless another customer does
    doc = ARGV[4]
    local ids = '[]'
    if ident ~= '' and redis.call('HSETNX', K.identities(), ident, given) == 1 then
      doc, ids = listed(doc), cjson.encode({ident})
    end
    redis.call('HSET', K.customer(given), 'doc', doc, 'ids', ids, 'made', 'named')
    return found(given, true, doc)
  end
  if ident ~= '' and doc and redis.call('HSETNX', K.identities(), ident, given) == 1 then
    doc = join(given, doc)
  end
  return found(given, false, doc)
end
if ident == '' then return found('', false, false) end
local owner = redis.call('HGET', K.identities(), ident)
if owner then return found(owner, false, redis.call('HGET', K.customer(owner), 'doc')) end
redis.call('HSET', K.identities(), ident, fresh)
local doc = listed(ARGV[4])  -- a new customer lists the identity it was first heard from
redis.call('HSET', K.customer(fresh), 'doc', doc, 'ids', cjson.encode({ident}), 'made', 'sender')
return found(fresh, true, doc)
