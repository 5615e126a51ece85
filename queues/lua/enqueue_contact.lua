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
--            8  customer id ('' for none)
--            9  home queue (reported and counted against until another queue answers it)
--            10-12 the first step's queue, offer timeout (ms) and timeout (ms) when it is one
--               queue and no agents (then 14 is not decoded), else three empty fields
--            13 workflow steps (JSON list of {q: [queue], a: [agent id], t: timeout ms (0: the
--               last), o: [offer timeout (ms) of each queue of q], ao: offer timeout (ms) for
--               the agents of a}; a and ao only when there are agents)
--            14 the first of them alone (JSON)
--            15 the agent's view of the contact (JSON, sent with offers)
--            16 contact document (JSON: the static fields of the public Contact)
-- Returns [code, payload, events]:
--   OK                    {replay = bool, contact = contact_out}
--   IDEMPOTENCY_CONFLICT  {first = the contact first created with this key}
-- (the twelve short fields in one match; the long fields with find: a pattern reads a long
-- field a character at a time)
local packed = ARGV[1]
local now_s, cid, idem, ch, cc, ks, slt, cust, home, q1, o1, t1, at = string.match(packed,
  '^(%Z*)%z(%Z*)%z(%Z*)%z(%Z*)%z(%Z*)%z(%Z*)%z(%Z*)%z(%Z*)%z(%Z*)%z(%Z*)%z(%Z*)%z(%Z*)%z()')
local stop = find(packed, '\0', at, true)
local steps = sub(packed, at, stop - 1)
at = stop + 1
stop = find(packed, '\0', at, true)
local cur = sub(packed, at, stop - 1)
at = stop + 1
stop = find(packed, '\0', at, true)
local view, doc = sub(packed, at, stop - 1), sub(packed, stop + 1)
local now = now_s + 0
if idem ~= '' then
  local b1 = find(idem, '|', 1, true)
  local b2 = find(idem, '|', b1 + 1, true)
  local hash, key = sub(idem, 1, b1 - 1), K.idempotency(sub(idem, b2 + 1))
  local prev = redis.call('GET', key)
  if prev then
    local sep = find(prev, '|', 1, true)
    local first = sub(prev, sep + 1)
    if sub(prev, 1, sep - 1) ~= hash then
      return finish(E.IDEMPOTENCY_CONFLICT, {first = first})
    end
    return finish(E.OK, '{"replay":true,"contact":' .. (contact_out(first) or 'null') .. '}')
  end
  redis.call('SET', key, hash .. '|' .. cid, 'EX', sub(idem, b1 + 1, b2 - 1))
end
-- (the list names every contact kept for the customer, for erasure: readers take its first
-- history_length; keep_ended bounds it when a contact ends, and sets its expiry, which a live
-- contact lifts: a list that expired under a contact still under way would leave that contact
-- out of the erasure's reach)
if cust ~= '' then
  redis.call('LPUSH', K.customer_history(cust), cid)
  redis.call('PERSIST', K.customer_history(cust))
end

-- As load_contact, with what this script reads (ks: the sort key as a string: this script
-- only sends it back to Redis).
local s
if q1 ~= '' then s = {q = {q1}, o = {o1 + 0}, t = t1 + 0} else s = cjson.decode(cur) end
local c = {id = cid, st = 'queued', cc = cc, ks = ks, s = s, agent = '', res = '', queue = home,
           enq_s = now_s, view = view}
count(c.queue, now, 'offered')
-- Matched at once, the contact is stored once, as offered, and never joins the waiting sets.
local ag, queue, timeout = pick_agent(c)
local step = nil
if not ag and s.a and not s.q[1] and step_dead(c) then
  -- its first step names agents alone, none of whom can answer: it starts at the first step
  -- after that somebody can
  c.step = 0
  if pass_dead(c, cjson.decode(steps)) then
    s, step, cur = c.s, fmt('%d', c.step), cjson.encode(c.s)
    ag, queue, timeout = pick_agent(c)
  end
end
if s.t > 0 then
  TIMERS[1], TIMERS[2] = fmt('%d', now + s.t), 's|' .. cid .. '|' .. (step or '0')
end
-- (step, agent, res, decl, hold, disp: stored only once they differ from their defaults)
local pos, staffed, lines = 0, 0, nil
if ag then
  reserve(c, ag, queue, timeout, now)
  redis.call('HSET', K.contact(cid), 'doc', doc, 'st', c.st, 'ch', ch, 'cc', cc, 'key', ks,
             'enq', now_s, 'steps', steps, 'cur', cur, 'slt', slt, 'cust', cust, 'view', view,
             'queue', c.queue, 'agent', c.agent, 'res', c.res)
else
  redis.call('HSET', K.contact(cid), 'doc', doc, 'st', c.st, 'ch', ch, 'cc', cc, 'key', ks,
             'enq', now_s, 'steps', steps, 'cur', cur, 'slt', slt, 'cust', cust, 'view', view,
             'queue', c.queue)
  add_waiting(c)
  pos, staffed, lines = waiting_out(c)
end
if step then redis.call('HSET', K.contact(cid), 'step', step) end
return finish(E.OK, '{"replay":false,"contact":' ..
                    contact_json(doc, c.st, ch, c.queue, c.agent, c.res, nil, pos, staffed,
                                 nil, lines) .. '}')
