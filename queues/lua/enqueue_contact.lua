-- enqueue_contact: record a new contact and, if an agent is free for its first step, reserve
-- that agent at once. Replays of the same Idempotency-Key return the stored contact.
-- KEYS[1]  tenant key prefix "sb:{tenant}:"
-- ARGV[1]  the fields below joined by NUL ("\0"), which none of them contains (one argument
--          costs the client far less than twelve); the document, last, is taken whole:
--            1  now (ms)
--            2  contact id
--            3  idempotency: '' for none, else "<hash of the request body>|<how long the key
--               is remembered (s)>|<key>"
--            4  channel (voice | chat | email | sms | callback)
--            5  capacity channel (the agent capacity it uses; callback uses voice)
--            6  sort key (ms): enqueued_at - priority; lower is served first
--            7  service-level threshold (ms)
--            8  customer: '' for none, else "<history length kept>|<customer id>"
--            9  home queue (reported and counted against until another queue answers it)
--            10 workflow steps (JSON list of {q: [queue], a: [agent id], t: timeout ms (0: the
--               last), o: [offer timeout (ms) of each queue of q], ao: offer timeout (ms) for
--               the agents of a}; a and ao only when there are agents)
--            11 the first of them alone (JSON; all this script decodes)
--            12 the agent's view of the contact (JSON, sent with offers)
--            13 contact document (JSON: the static fields of the public Contact)
-- Returns [code, payload, events]:
--   OK                    {replay = bool, contact = contact_out}
--   IDEMPOTENCY_CONFLICT  {c = the contact first created with this key}
local A, at, packed = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 1, ARGV[1]
for i = 1, 12 do
  local stop = find(packed, '\0', at, true)
  A[i], at = sub(packed, at, stop - 1), stop + 1
end
local doc = sub(packed, at)
local now, cid, idem, cust = A[1] + 0, A[2], A[3], A[8]
if idem ~= '' then
  local b1 = find(idem, '|', 1, true)
  local b2 = find(idem, '|', b1 + 1, true)
  local hash, key = sub(idem, 1, b1 - 1), K.idempotency(sub(idem, b2 + 1))
  local prev = redis.call('GET', key)
  if prev then
    local sep = find(prev, '|', 1, true)
    local first = sub(prev, sep + 1)
    if sub(prev, 1, sep - 1) ~= hash then
      return finish(E.IDEMPOTENCY_CONFLICT, {c = first})
    end
    return finish(E.OK, '{"replay":true,"contact":' .. (contact_out(first) or 'null') .. '}')
  end
  redis.call('SET', key, hash .. '|' .. cid, 'EX', sub(idem, b1 + 1, b2 - 1))
end
if cust ~= '' then
  local bar = find(cust, '|', 1, true)
  local keep = sub(cust, 1, bar - 1) + 0
  cust = sub(cust, bar + 1)
  if redis.call('LPUSH', K.customer_history(cust), cid) > keep then
    redis.call('LTRIM', K.customer_history(cust), 0, keep - 1)
  end
end

-- As load_contact, with what this script reads (ks: the sort key as a string: this script
-- only sends it back to Redis).
local c = {id = cid, st = 'queued', cc = A[5], ks = A[6], step = 0, s = cjson.decode(A[11]),
           agent = '', res = '', queue = A[9], enq = now, enq_s = A[1], decl = {}, hold = 0,
           view = A[12]}
count(c.queue, now, 'offered')
if c.s.t > 0 then
  TIMERS[1], TIMERS[2] = fmt('%d', now + c.s.t), 's|' .. cid .. '|0'
end
-- Matched at once, the contact is stored once, as offered, and never joins the waiting sets.
local matched = match_contact(c, now, true)
-- (step, agent, res, decl, hold, disp: stored only once they differ from their defaults)
if matched then
  redis.call('HSET', K.contact(cid), 'doc', doc, 'st', c.st, 'ch', A[4], 'cc', c.cc,
             'key', A[6], 'enq', A[1], 'steps', A[10], 'cur', A[11], 'slt', A[7], 'cust', cust,
             'view', c.view, 'queue', c.queue, 'agent', c.agent, 'res', c.res)
else
  redis.call('HSET', K.contact(cid), 'doc', doc, 'st', c.st, 'ch', A[4], 'cc', c.cc,
             'key', A[6], 'enq', A[1], 'steps', A[10], 'cur', A[11], 'slt', A[7], 'cust', cust,
             'view', c.view, 'queue', c.queue)
  add_waiting(c)
end
return finish(E.OK, '{"replay":false,"contact":' .. new_contact_out(c, doc, A[4]) .. '}')
