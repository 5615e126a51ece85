-- enqueue_contact: record a new contact and, if an agent is free for its first step, reserve
-- that agent at once. Replays of the same Idempotency-Key return the stored contact.
-- KEYS[1]  tenant key prefix "sb:{tenant}:"
-- ARGV[1]  the fields below joined by NUL ("\0"), which none of them contains (one argument
--          costs the client far less than sixteen); the document, last, is taken whole:
--            1  now (ms)
--            2  contact id
--            3  idempotency key ('' for none)
--            4  hash of the request body the key was sent with
--            5  how long the idempotency key is remembered (s)
--            6  channel (voice | chat | email | sms | callback)
--            7  capacity channel (the agent capacity it uses; callback uses voice)
--            8  sort key (ms): enqueued_at - priority; lower is served first
--            9  service-level threshold (ms)
--            10 customer id ('' for none)
--            11 customer history length kept
--            12 home queue (reported and counted against until another queue answers it)
--            13 workflow steps (JSON list of {q: [queue], a: [agent id], t: timeout ms, 0 = last})
--            14 the first of them alone (JSON; all this script needs, and cheaper to decode)
--            15 offer timeouts (JSON {queue: ms, "": ms for targeted agents})
--            16 the agent's view of the contact (JSON, sent with offers)
--            17 contact document (JSON: the static fields of the public Contact)
-- Returns [code, payload, events]:
--   OK                    {replay = bool, contact = contact_out}
--   IDEMPOTENCY_CONFLICT  {c = the contact first created with this key}
local A, at, packed = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 1, ARGV[1]
for i = 1, 16 do
  local stop = string.find(packed, '\0', at, true)
  A[i], at = string.sub(packed, at, stop - 1), stop + 1
end
local doc = string.sub(packed, at)
local now, cid, idem = tonumber(A[1]), A[2], A[3]
if idem ~= '' then
  local prev = redis.call('GET', K.idempotency(idem))
  if prev then
    local sep = string.find(prev, '|', 1, true)
    local first = string.sub(prev, sep + 1)
    if string.sub(prev, 1, sep - 1) ~= A[4] then
      return finish(E.IDEMPOTENCY_CONFLICT, {c = first})
    end
    return finish(E.OK, {replay = true, contact = contact_out(first)})
  end
  redis.call('SET', K.idempotency(idem), A[4] .. '|' .. cid, 'EX', A[5])
end

-- As load_contact, with what this script reads: c.steps holds only the first step, and the
-- sort key only as a string (ks: this script only sends it back to Redis).
local c = {id = cid, st = 'queued', cc = A[7], ks = A[8], step = 0,
           steps = {cjson.decode(A[14])}, agent = '', res = '', queue = A[12], enq = now,
           enq_s = A[1], decl = {}, ot = cjson.decode(A[15]), hold = 0, cust = A[10],
           view = A[16]}
if c.cust ~= '' then
  local keep = tonumber(A[11])
  if redis.call('LPUSH', K.customer_history(c.cust), cid) > keep then
    redis.call('LTRIM', K.customer_history(c.cust), 0, keep - 1)
  end
end
count(c.queue, now, 'offered')
local first_step = current_step(c)
if first_step.t > 0 then set_timer(fmt('%d', now + first_step.t), step_timer(c)) end
-- Matched at once, the contact is stored once, as offered, and never joins the waiting sets.
local matched = match_contact(c, now, true)
-- (step, agent, res, decl, hold, disp: stored only once they differ from their defaults)
if matched then
  redis.call('HSET', K.contact(cid), 'doc', doc, 'st', c.st, 'ch', A[6], 'cc', c.cc,
             'key', A[8], 'enq', A[1], 'steps', A[13], 'ot', A[15], 'slt', A[9], 'cust', c.cust,
             'view', c.view, 'queue', c.queue, 'agent', c.agent, 'res', c.res)
else
  redis.call('HSET', K.contact(cid), 'doc', doc, 'st', c.st, 'ch', A[6], 'cc', c.cc,
             'key', A[8], 'enq', A[1], 'steps', A[13], 'ot', A[15], 'slt', A[9], 'cust', c.cust,
             'view', c.view, 'queue', c.queue)
  add_waiting(c)
end
return finish(E.OK, {replay = false, contact = new_contact_out(c, doc, A[6])})
