-- upsert_customer: create or replace a customer profile and the identities that resolve to it.
-- Identities the profile no longer lists are released. An identity owned by a placeholder (a
-- customer resolve_customer made for an unknown sender, never PUT) passes to this customer,
-- and the placeholder is merged into it: all its identities and its contact history come
-- along, and its id is left as a forward ('to') that resolve_customer follows. An identity
-- owned by any other customer is a conflict and nothing changes.
-- KEYS[1]  tenant key prefix "sb:{tenant}:"
-- ARGV[1]  customer id
-- ARGV[2]  profile document (JSON as the service writes it: phones, emails and chat_handles
--          present, before any other object)
-- ARGV[3]  identities (JSON list of normalised "phone:+E164", "email:x", "chat:gw:handle")
-- Returns [code, payload, events]:
--   OK                       {created = bool, doc = profile JSON as stored, merged = the
--                             placeholder ids merged into it (absent when none)}
--   CUSTOMER_IDENTITY_TAKEN  {identity = the first one owned by another customer, owner}
local cid, doc, ids = ARGV[1], ARGV[2], ARGV[3]
local wanted = cjson.decode(ids)

-- A placeholder: 'made' is 'sender' (set by resolve_customer for an unknown sender). One made
-- before that field existed has no 'made' and is known by what only resolve_customer wrote
-- for it: a generated id ('cu' and 16 hex digits) and a profile with 'source' at the top (a
-- PUT profile cannot have that field).
local GENERATED = '^cu' .. string.rep('%x', 16) .. '$'
local function placeholder(id)
  local f = redis.call('HMGET', K.customer(id), 'made', 'doc')
  if f[1] then return f[1] == 'sender' end
  if not f[2] or not string.match(id, GENERATED) then return false end
  local ok, profile = pcall(cjson.decode, f[2])
  return ok and type(profile) == 'table' and profile.source ~= nil
end

-- The identity added to the profile's phones, emails or chat_handles as PUT takes them (a web
-- chat handle bare), first in its list, as resolve_customer lists an identity that joins.
local FIELDS = {phone = 'phones', email = 'emails', chat = 'chat_handles'}
local function listed(profile, ident)
  local kind, value = string.match(ident, '^(%a+):(.*)$')
  local field = FIELDS[kind]
  if not field then return profile end
  if kind == 'chat' and sub(value, 1, 4) == 'web:' then value = sub(value, 5) end
  local _, e = find(profile, '"' .. field .. '"%s*:%s*%[')
  if not e then return profile end
  local empty = find(profile, '^%s*%]', e + 1)
  return sub(profile, 1, e) .. cjson.encode(value) .. (empty and '' or ',') .. sub(profile, e + 1)
end

-- The contacts of several histories as one, newest first (by enqueue time, then by the order
-- they were listed in), all of them (erasure reads the whole list); contacts no longer stored
-- are left out. Also the longest time (ms) one of the lists had left to live, or -1 when one
-- had no expiry (see keep_ended).
local function merged_history(customers)
  local all, ttl = {}, 0
  for _, owner in ipairs(customers) do
    local left = redis.call('PTTL', K.customer_history(owner))
    if left == -1 or ttl == -1 then ttl = -1 elseif left > ttl then ttl = left end
    for _, id in ipairs(redis.call('LRANGE', K.customer_history(owner), 0, -1)) do
      local enq = redis.call('HGET', K.contact(id), 'enq')
      if enq then all[#all + 1] = {id = id, at = tonumber(enq), i = #all} end
    end
  end
  table.sort(all, function(a, b)
    if a.at ~= b.at then return a.at > b.at end
    return a.i < b.i
  end)
  local out, seen = {}, {}
  for _, h in ipairs(all) do
    if not seen[h.id] then
      seen[h.id] = true
      out[#out + 1] = h.id
    end
  end
  return out, ttl
end

local merged, taking = {}, {}
for _, ident in ipairs(wanted) do
  local owner = redis.call('HGET', K.identities(), ident)
  if owner and owner ~= cid and not taking[owner] then
    if not placeholder(owner) then
      return finish(E.CUSTOMER_IDENTITY_TAKEN, {identity = ident, owner = owner})
    end
    taking[owner] = true
    merged[#merged + 1] = owner
  end
end
local old = redis.call('HGET', K.customer(cid), 'ids')
local keep = set_of(wanted)
if old then
  for _, ident in ipairs(cjson.decode(old)) do
    if not keep[ident] and redis.call('HGET', K.identities(), ident) == cid then
      redis.call('HDEL', K.identities(), ident)
    end
  end
end
for _, ident in ipairs(wanted) do redis.call('HSET', K.identities(), ident, cid) end
if #merged > 0 then
  -- the placeholders' other identities (a thread reply's address, say) come along too, listed
  -- on the profile like any identity that joins a customer: a later PUT without them releases
  -- them
  local extra = {}
  for _, x in ipairs(merged) do
    local xids = redis.call('HGET', K.customer(x), 'ids')
    for _, ident in ipairs(xids and cjson.decode(xids) or {}) do
      if not keep[ident] and redis.call('HGET', K.identities(), ident) == x then
        redis.call('HSET', K.identities(), ident, cid)
        keep[ident] = true
        extra[#extra + 1] = ident
      end
    end
  end
  if #extra > 0 then
    for i = #extra, 1, -1 do doc = listed(doc, extra[i]) end
    for _, ident in ipairs(extra) do wanted[#wanted + 1] = ident end
    ids = cjson.encode(wanted)
  end
  local sources = {cid}
  for _, x in ipairs(merged) do sources[#sources + 1] = x end
  local history, ttl = merged_history(sources)
  for _, x in ipairs(sources) do redis.call('DEL', K.customer_history(x)) end
  -- (in slices: unpack has a limit on how many values it returns)
  for i = 1, #history, 1000 do
    redis.call('RPUSH', K.customer_history(cid), unpack(history, i, math.min(i + 999, #history)))
  end
  if #history > 0 and ttl > 0 then redis.call('PEXPIRE', K.customer_history(cid), ttl) end
  for _, x in ipairs(merged) do
    redis.call('DEL', K.customer(x))
    redis.call('HSET', K.customer(x), 'to', cid)
  end
  -- the customer lists the placeholders merged into it ('merged'), for delete_customer
  local before = redis.call('HGET', K.customer(cid), 'merged')
  local all = before and cjson.decode(before) or {}
  for _, x in ipairs(merged) do all[#all + 1] = x end
  redis.call('HSET', K.customer(cid), 'merged', cjson.encode(all))
end
-- ('to' goes: a PUT of a merged placeholder's id makes a customer of its own under it)
redis.call('HSET', K.customer(cid), 'doc', doc, 'ids', ids, 'made', 'put')
redis.call('HDEL', K.customer(cid), 'to')
return finish(E.OK, {created = old == false, doc = doc,
                     merged = #merged > 0 and merged or nil})
