-- enqueue_contact: record a new contact and, if an agent is free for its first step, reserve
-- that agent at once. Replays of the same Idempotency-Key return the stored contact.
-- KEYS[1]   tenant key prefix "sb:{tenant}:"
-- ARGV[1]   now (ms)
-- ARGV[2]   contact id
-- ARGV[3]   idempotency key ('' for none)
-- ARGV[4]   hash of the request body the key was sent with
-- ARGV[5]   how long the idempotency key is remembered (s)
-- ARGV[6]   contact document (JSON: the static fields of the public Contact)
-- ARGV[7]   channel (voice | chat | email | sms | callback)
-- ARGV[8]   capacity channel (the agent capacity it uses; callback uses voice)
-- ARGV[9]   sort key (ms): enqueued_at - priority; lower is served first
-- ARGV[10]  workflow steps (JSON list of {q: [queue], a: [agent id], t: timeout ms, 0 = last})
-- ARGV[11]  offer timeouts (JSON {queue: ms, "": ms for targeted agents})
-- ARGV[12]  service-level threshold (ms)
-- ARGV[13]  customer id ('' for none)
-- ARGV[14]  the agent's view of the contact (JSON, sent with offers)
-- ARGV[15]  customer history length kept
-- ARGV[16]  home queue (reported and counted against until another queue answers it)
-- Returns [code, payload, events]:
--   OK                    {replay = bool, contact = contact_out}
--   IDEMPOTENCY_CONFLICT  {c = the contact first created with this key}
local now, cid, idem = tonumber(ARGV[1]), ARGV[2], ARGV[3]
if idem ~= '' then
  local prev = redis.call('GET', K.idempotency(idem))
  if prev then
    local sep = string.find(prev, '|', 1, true)
    local first = string.sub(prev, sep + 1)
    if string.sub(prev, 1, sep - 1) ~= ARGV[4] then
      return finish(E.IDEMPOTENCY_CONFLICT, {c = first})
    end
    return finish(E.OK, {replay = true, contact = contact_out(first)})
  end
  redis.call('SET', K.idempotency(idem), ARGV[4] .. '|' .. cid, 'EX', ARGV[5])
end

local c = {id = cid, st = 'queued', cc = ARGV[8], key = tonumber(ARGV[9]), step = 0,
           steps = cjson.decode(ARGV[10]), agent = '', res = '', queue = ARGV[16], enq = now,
           decl = {}, ot = cjson.decode(ARGV[11]), slt = tonumber(ARGV[12]), hold = 0,
           cust = ARGV[13]}
redis.call('HSET', K.contact(cid), 'doc', ARGV[6], 'st', 'queued', 'ch', ARGV[7], 'cc', c.cc,
           'key', ARGV[9], 'enq', now, 'step', 0, 'steps', ARGV[10], 'ot', ARGV[11],
           'slt', ARGV[12], 'cust', c.cust, 'view', ARGV[14], 'queue', c.queue, 'agent', '',
           'res', '', 'decl', '[]', 'hold', 0, 'disp', '')
if c.cust ~= '' then
  redis.call('LPUSH', K.customer_history(c.cust), cid)
  redis.call('LTRIM', K.customer_history(c.cust), 0, tonumber(ARGV[15]) - 1)
end
count(c.queue, now, 'offered')
local first_step = current_step(c)
if first_step.t > 0 then set_timer(now + first_step.t, step_timer(c)) end
add_waiting(c)
match_contact(c, now)
return finish(E.OK, {replay = false, contact = contact_out(cid)})
