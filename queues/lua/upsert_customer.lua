-- upsert_customer: create or replace a customer profile and the identities that resolve to it.
-- Identities the profile no longer lists are released; one owned by another customer is a
-- conflict and nothing changes.
-- KEYS[1]  tenant key prefix "sb:{tenant}:"
-- ARGV[1]  customer id
-- ARGV[2]  profile document (JSON)
-- ARGV[3]  identities (JSON list of normalised "phone:+E164", "email:x", "chat:gw:handle")
-- Returns [code, payload, events]:
--   OK                       {created = bool, doc = profile JSON}
--   CUSTOMER_IDENTITY_TAKEN  {identity = the first one owned by another customer, owner}
local cid = ARGV[1]
local wanted = cjson.decode(ARGV[3])
for _, ident in ipairs(wanted) do
  local owner = redis.call('HGET', K.identities(), ident)
  if owner and owner ~= cid then
    return finish(E.CUSTOMER_IDENTITY_TAKEN, {identity = ident, owner = owner})
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
redis.call('HSET', K.customer(cid), 'doc', ARGV[2], 'ids', ARGV[3])
return finish(E.OK, {created = old == false, doc = ARGV[2]})
