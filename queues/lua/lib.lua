-- lib.lua: helpers shared by the transition scripts. Each script is sent with only the helpers
-- it uses, after "local P = KEYS[1]" (queues/scripts.py); its key builders K.<name>(parts...)
-- become the concatenations themselves (queues/keys.py) and E.<CODE> the codes' numbers.
--
-- Conventions (mirrored function by function in queues/memory.py):
--   * times are integer milliseconds, always passed in by the caller (`now`); scripts never
--     read the clock;
--   * a contact's sort key is enqueued_ms - priority_ms: lower is served first, everywhere;
--   * an agent sits in q:<queue>:f:<channel> exactly when can_take(agent, channel) holds, so
--     finding a free agent is one ZRANGE and never a scan over agents;
--   * events are collected in EV, published once on the tenant's channel and returned;
--   * timers set by a script are collected in TIMERS and added by finish with one ZADD (so a
--     script never removes or reads a timer it set itself);
--   * numbers go to redis.call as strings where it is cheap to have them so (fmt('%d', n) or
--     the caller's own string): Redis formats a Lua number argument with "%.17g", which costs
--     more than the command itself for the small ones.

local fmt = string.format

local EV = {}
-- contact id -> the contact's view JSON (or true: read it at the end), for offers' messages
local VIEWS = {}
local TIMERS = {}

local function emit(ev)
  EV[#EV + 1] = ev
end

local function set_timer(due, member)
  TIMERS[#TIMERS + 1] = due
  TIMERS[#TIMERS + 1] = member
end

-- Byte-wise "a < b": Lua's own string comparison follows the server's locale (strcoll).
local function str_lt(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

local function set_of(list)
  local s = {}
  for _, v in ipairs(list) do s[v] = true end
  return s
end

-- Adds the timers, publishes the events (offers carry the contact's view for the agent) and
-- encodes the reply [code, payload, events]; the events are encoded once for both.
local function finish(code, payload)
  if #TIMERS > 0 then redis.call('ZADD', K.timers(), unpack(TIMERS)) end
  local ev = '{}'
  if #EV > 0 then
    ev = cjson.encode(EV)
    local parts = {}
    for cid, view in pairs(VIEWS) do
      if view == true then view = redis.call('HGET', K.contact(cid), 'view') end
      if view then parts[#parts + 1] = cjson.encode(cid) .. ':' .. view end
    end
    redis.call('PUBLISH', K.events(),
               '{"ev":' .. ev .. ',"views":{' .. table.concat(parts, ',') .. '}}')
  end
  return fmt('[%d,', code) .. cjson.encode(payload or false) .. ',' .. ev .. ']'
end

-- ---------------------------------------------------------------------------------- agents

-- An agent's hash: st, load, idle, tw (see add_waiting), its profile (cap, excl and qn, its
-- queues' names: one field 'prof', one decode), its memberships 'qs' (queue, strategy, level:
-- decoded only when a free set's score needs them, memberships(ag)), 'cap' alone for
-- list_agents, its document 'doc', and one field 'o:<reservation>' = contact per pending offer
-- (written with the agent's load, where a set of offers would cost a command more).
-- all: with the document and the offers too (for agent_out(aid, ag)).
local function load_agent(aid, all)
  local f, offers
  if all then
    f = redis.call('HMGET', K.agent(aid), 'st', 'prof', 'load', 'idle', 'tw', 'qs', 'doc')
    if not f[1] then return nil end
    offers = {}
    for _, k in ipairs(redis.call('HKEYS', K.agent(aid))) do
      if string.byte(k, 1) == 111 and string.byte(k, 2) == 58 then  -- 'o:'
        offers[#offers + 1] = string.sub(k, 3)
      end
    end
  else
    f = redis.call('HMGET', K.agent(aid), 'st', 'prof', 'load', 'idle', 'tw', 'qs')
    if not f[1] then return nil end
  end
  local prof = cjson.decode(f[2])
  return {id = aid, st = f[1], cap = prof.cap, excl = prof.excl, qn = prof.qn,
          load = cjson.decode(f[3]), idle = tonumber(f[4]), tw = f[5] or '0', qs_json = f[6],
          doc = f[7], offers = offers}
end

local function memberships(ag)
  if not ag.qs then ag.qs = cjson.decode(ag.qs_json) end
  return ag.qs
end

-- Stores the agent's state, load and idle time, and the offers reserve left to it (ag.added).
local function save_agent(ag)
  if ag.added then
    local args = ag.added
    ag.added = nil
    args[#args + 1] = 'st'
    args[#args + 1] = ag.st
    args[#args + 1] = 'load'
    args[#args + 1] = cjson.encode(ag.load)
    args[#args + 1] = 'idle'
    args[#args + 1] = fmt('%d', ag.idle)
    redis.call('HSET', K.agent(ag.id), unpack(args))
  else
    redis.call('HSET', K.agent(ag.id), 'st', ag.st, 'load', cjson.encode(ag.load),
               'idle', fmt('%d', ag.idle))
  end
end

local function can_take(ag, ch)
  if ag.st ~= 'available' then return false end
  if (ag.load[ch] or 0) >= (ag.cap[ch] or 0) then return false end
  for _, x in ipairs(ag.excl) do
    if (ag.load[x] or 0) > 0 then return false end
  end
  return true
end

-- The channels an agent can take now, i.e. whose free sets it is in (see refresh_free).
local function free_channels(ag)
  local s = {}
  for ch, _ in pairs(ag.cap) do
    if can_take(ag, ch) then s[ch] = true end
  end
  return s
end

-- Score of an agent in a queue's free set: lower is offered first. Idle time breaks ties.
local function agent_score(ag, strategy, level)
  if strategy == 'most_skilled' then
    return ag.idle - level * 1e13
  elseif strategy == 'least_busy' then
    local used, total = 0, 0
    for ch, n in pairs(ag.cap) do
      total = total + n
      used = used + (ag.load[ch] or 0)
    end
    local pct = 0
    if total > 0 then pct = math.floor(used * 100 / total) end
    return ag.idle + pct * 1e13
  end
  return ag.idle
end

-- Puts the agent in (with its current score) or takes it out of each free set of its queues.
-- `was`, free_channels(ag) before the change, skips the sets it was not in and is not now.
local function refresh_free(ag, was)
  for ch, _ in pairs(ag.cap) do
    if can_take(ag, ch) then
      for _, m in ipairs(memberships(ag)) do
        redis.call('ZADD', K.queue_free(m[1], ch), agent_score(ag, m[2], m[3]), ag.id)
      end
    elseif was == nil or was[ch] then
      for _, q in ipairs(ag.qn) do
        redis.call('ZREM', K.queue_free(q, ch), ag.id)
      end
    end
  end
end

-- ag: the agent as stored now, loaded with load_agent(aid, true) (else it is loaded here)
local function agent_out(aid, ag)
  ag = ag or load_agent(aid, true)
  if not ag then return nil end
  return {doc = ag.doc, st = ag.st, cap = ag.cap, load = ag.load, queues = ag.qn,
          offers = ag.offers}
end

local function emit_state(ag)
  local load = {}
  for ch, n in pairs(ag.load) do load[ch] = n end
  emit({t = 'state', a = ag.id, s = ag.st, l = load})
end

-- ---------------------------------------------------------------------------------- contacts

-- A contact is stored without the fields still at their defaults: step 0, agent '', res '',
-- decl [] (agents who declined it), hold 0 (a callback's not-before), disp ''.
local function load_contact(cid)
  local f = redis.call('HMGET', K.contact(cid), 'st', 'cc', 'key', 'step', 'steps', 'agent',
                       'res', 'queue', 'enq', 'decl', 'ot', 'slt', 'hold', 'cust')
  if not f[1] then return nil end
  return {id = cid, st = f[1], cc = f[2], key = tonumber(f[3]), ks = f[3],
          step = tonumber(f[4] or '0'), steps = cjson.decode(f[5]), agent = f[6] or '',
          res = f[7] or '', queue = f[8], enq = tonumber(f[9]), enq_s = f[9],
          decl = f[10] and cjson.decode(f[10]) or {},
          ot = cjson.decode(f[11]), slt = tonumber(f[12]), hold = tonumber(f[13] or '0'),
          cust = f[14]}
end

-- What reserve needs of a waiting contact (match_agent's pick, with its sort key as stored),
-- and its view for the offer.
local function load_waiting(cid, ks)
  local f = redis.call('HMGET', K.contact(cid), 'cc', 'step', 'steps', 'queue', 'ot', 'view')
  return {id = cid, ks = ks, cc = f[1], step = tonumber(f[2] or '0'),
          steps = cjson.decode(f[3]), queue = f[4], ot = cjson.decode(f[5]), view = f[6]}
end

local function current_step(c)
  return c.steps[c.step + 1]
end

-- A contact waits in the waiting sets (queue_waiting, agent_waiting) of its current step as
-- member "<sort key>|<id>", scored by its sort key: match_agent reads the key from the member
-- (WITHSCORES would make Redis format each score with printf, and Lua parse it back). ks is
-- the sort key as stored, so the member is always spelt the same. queue_age: member id,
-- scored by the time it was enqueued (enq_s, as stored).
-- An agent's field tw counts the contacts waiting for it alone (in its agent_waiting sets), so
-- that match_agent reads those sets only when there are some.
local function add_waiting(c)
  local s = current_step(c)
  local member = c.ks .. '|' .. c.id
  for _, aid in ipairs(s.a) do
    if redis.call('ZADD', K.agent_waiting(aid, c.cc), c.ks, member) == 1 then
      redis.call('HINCRBY', K.agent(aid), 'tw', '1')
    end
  end
  for _, q in ipairs(s.q) do
    redis.call('ZADD', K.queue_waiting(q, c.cc), c.ks, member)
    redis.call('ZADD', K.queue_age(q), c.enq_s, c.id)
  end
end

local function remove_waiting(c)
  local s = current_step(c)
  local member = c.ks .. '|' .. c.id
  for _, aid in ipairs(s.a) do
    if redis.call('ZREM', K.agent_waiting(aid, c.cc), member) == 1 then
      redis.call('HINCRBY', K.agent(aid), 'tw', '-1')
    end
  end
  for _, q in ipairs(s.q) do
    redis.call('ZREM', K.queue_waiting(q, c.cc), member)
    redis.call('ZREM', K.queue_age(q), c.id)
  end
end

local function position(c)
  local s = current_step(c)
  local key
  if #s.q > 0 then
    key = K.queue_waiting(s.q[1], c.cc)
  elseif #s.a > 0 then
    key = K.agent_waiting(s.a[1], c.cc)
  else
    return 1
  end
  local rank = redis.call('ZRANK', key, c.ks .. '|' .. c.id)
  if rank then return rank + 1 end
  -- a contact held for a callback is not in the set but keeps its place
  return redis.call('ZCOUNT', key, '-inf', c.ks) + 1
end

local function stats_key(queue, now)
  return K.queue_stats(queue) .. fmt(':%d', math.floor(now / 86400000))
end

-- Adds `by` (an integer; default 1) to a counter of the queue's day. The first increment of a
-- field is when the day's hash may be new: it then gets its expiry (8 days).
local function count(queue, now, field, by)
  if queue ~= '' then
    local key = stats_key(queue, now)
    local new
    if by then
      new = redis.call('HINCRBY', key, field, fmt('%d', by)) == by
    else
      new = redis.call('HINCRBY', key, field, '1') == 1
    end
    if new then redis.call('EXPIRE', key, '691200') end
  end
end

-- A waiting contact's place in line and how many agents could serve it: the best-staffed
-- queue of its step (no scan over agents).
local function waiting_out(c, out)
  out.pos = position(c)
  local s = current_step(c)
  for _, q in ipairs(s.q) do
    out.staffed = math.max(out.staffed, redis.call('SCARD', K.queue_staffed(q)))
  end
  for _, aid in ipairs(s.a) do
    local st = redis.call('HGET', K.agent(aid), 'st')
    if st and st ~= 'offline' then out.staffed = out.staffed + 1 end
  end
  return out
end

local function contact_out(cid)
  local f = redis.call('HMGET', K.contact(cid), 'doc', 'st', 'ch', 'queue', 'agent', 'res',
                       'disp', 'cc')
  if not f[1] then return nil end
  local out = {doc = f[1], st = f[2], ch = f[3], queue = f[4], agent = f[5] or '',
               res = f[6] or '', disp = f[7] or '', pos = 0, staffed = 0}
  if f[2] == 'queued' then waiting_out(load_contact(cid), out) end
  return out
end

-- contact_out of a contact just created (c as stored, with its document and channel).
local function new_contact_out(c, doc, ch)
  local out = {doc = doc, st = c.st, ch = ch, queue = c.queue, agent = c.agent, res = c.res,
               disp = '', pos = 0, staffed = 0}
  if c.st == 'queued' then waiting_out(c, out) end
  return out
end

-- ---------------------------------------------------------------------------------- matching

-- Offers contact c to agent ag. fresh: c is being created (not stored yet, in no waiting set;
-- the caller stores it). defer: the caller saves the agent and refreshes its free sets.
local function reserve(c, ag, queue, now, fresh, defer)
  local rid = fmt('r%d', redis.call('INCR', K.seq()))
  local was = nil
  if not defer then was = free_channels(ag) end
  local exp = now + (c.ot[queue] or c.ot[''])
  local exp_s = fmt('%d', exp)
  if queue ~= '' then c.queue = queue end
  if not fresh then
    remove_waiting(c)
    redis.call('HSET', K.contact(c.id), 'st', 'offered', 'agent', ag.id, 'res', rid,
               'queue', c.queue)
  end
  redis.call('HSET', K.reservation(rid), 'c', c.id, 'a', ag.id, 'st', 'pending', 'x', exp_s,
             'q', queue)
  ag.load[c.cc] = (ag.load[c.cc] or 0) + 1
  if ag.offers then ag.offers[#ag.offers + 1] = rid end
  if defer then
    ag.added = ag.added or {}
    ag.added[#ag.added + 1] = 'o:' .. rid
    ag.added[#ag.added + 1] = c.id
  else
    -- only its load and offers changed
    redis.call('HSET', K.agent(ag.id), 'load', cjson.encode(ag.load), 'o:' .. rid, c.id)
    refresh_free(ag, was)
  end
  set_timer(exp_s, 'o|' .. rid)
  c.st, c.agent, c.res = 'offered', ag.id, rid
  emit({t = 'offer', a = ag.id, r = rid, c = c.id, x = exp, q = queue})
  VIEWS[c.id] = c.view or true
end

-- Contact side: the first target agent, then the first queue of the step with a free agent.
-- fresh: see reserve.
local function match_contact(c, now, fresh)
  local s = current_step(c)
  local declined = set_of(c.decl)
  for _, aid in ipairs(s.a) do
    if not declined[aid] then
      local ag = load_agent(aid)
      if ag and can_take(ag, c.cc) then
        reserve(c, ag, '', now, fresh)
        return true
      end
    end
  end
  local last = #c.decl == 0 and '0' or fmt('%d', #c.decl)
  for _, q in ipairs(s.q) do
    for _, aid in ipairs(redis.call('ZRANGE', K.queue_free(q, c.cc), '0', last)) do
      if not declined[aid] then
        reserve(c, load_agent(aid), q, now, fresh)
        return true
      end
    end
  end
  return false
end

-- Agent side: the contact with the lowest sort key among everything the agent may take,
-- repeated while the agent has free capacity. defer: see reserve.
local function match_agent(ag, now, defer)
  local ndecl = redis.call('SCARD', K.agent_declined(ag.id))
  local last = ndecl == 0 and '0' or fmt('%d', ndecl)
  while true do
    local best, best_key, best_ks, best_queue = nil, nil, nil, nil
    local function consider(key, queue)
      for _, member in ipairs(redis.call('ZRANGE', key, '0', last)) do
        local bar = string.find(member, '|', 1, true)
        local cid = string.sub(member, bar + 1)
        if ndecl == 0 or redis.call('SISMEMBER', K.agent_declined(ag.id), cid) == 0 then
          local ks = string.sub(member, 1, bar - 1)
          local score = tonumber(ks)
          if best == nil or score < best_key or (score == best_key and str_lt(cid, best)) then
            best, best_key, best_ks, best_queue = cid, score, ks, queue
          end
          return
        end
      end
    end
    for ch, _ in pairs(ag.cap) do
      if can_take(ag, ch) then
        if ag.tw ~= '0' then consider(K.agent_waiting(ag.id, ch), '') end
        for _, q in ipairs(ag.qn) do consider(K.queue_waiting(q, ch), q) end
      end
    end
    if best == nil then return end
    reserve(load_waiting(best, best_ks), ag, best_queue, now, false, defer)
  end
end

-- Puts an offered contact back in line with its original sort key.
local function requeue(c)
  c.st, c.agent, c.res = 'queued', '', ''
  redis.call('HSET', K.contact(c.id), 'st', 'queued', 'agent', '', 'res', '')
  if c.hold == 0 then add_waiting(c) end
end

local function release_capacity(ag, ch, now)
  ag.load[ch] = (ag.load[ch] or 0) - 1
  if ag.load[ch] <= 0 then ag.load[ch] = nil end
  ag.idle = now
end

-- Ends a pending offer: marks the reservation and frees the agent's unit of capacity (not yet
-- saved: the caller may change the agent's state first). Returns the contact, the agent and
-- the agent's free channels before (for refresh_free).
local function end_offer(rid, status, now, ag)
  local r = redis.call('HMGET', K.reservation(rid), 'c', 'a')
  redis.call('HSET', K.reservation(rid), 'st', status)
  redis.call('ZREM', K.timers(), 'o|' .. rid)
  redis.call('HDEL', K.agent(r[2]), 'o:' .. rid)
  local c = load_contact(r[1])
  ag = ag or load_agent(r[2])
  local was = free_channels(ag)
  release_capacity(ag, c.cc, now)
  return c, ag, was
end

local function forget_declines(c)
  for _, aid in ipairs(c.decl) do
    redis.call('SREM', K.agent_declined(aid), c.id)
  end
end

local function step_timer(c)
  return fmt('s|%s|%d', c.id, c.step)
end

-- Moves an agent to a state and keeps its queues' staffed / available sets in step (sets, not
-- one sorted set: a small sorted set is a list Redis scans); save_agent stores it.
local function set_agent_state(ag, state)
  ag.st = state
  for _, q in ipairs(ag.qn) do
    if state == 'offline' then
      redis.call('SREM', K.queue_staffed(q), ag.id)
    else
      redis.call('SADD', K.queue_staffed(q), ag.id)
    end
    if state == 'available' then
      redis.call('SADD', K.queue_available(q), ag.id)
    else
      redis.call('SREM', K.queue_available(q), ag.id)
    end
  end
end

-- The contact is done: the agent's capacity frees and the agent takes the next contact (its
-- free sets written once, after).
local function close_contact(c, now)
  redis.call('HSET', K.contact(c.id), 'st', 'completed', 'ended', now)
  redis.call('HDEL', K.contact(c.id), 'view')
  forget_declines(c)
  local ag = load_agent(c.agent)
  local was = free_channels(ag)
  release_capacity(ag, c.cc, now)
  emit_state(ag)
  match_agent(ag, now, true)
  save_agent(ag)
  refresh_free(ag, was)
end

-- ---------------------------------------------------------------------------------- customers

-- A customer's last n contacts, newest first, each as it stands now.
local function history_out(cust, n)
  local out = {}
  for _, id in ipairs(redis.call('LRANGE', K.customer_history(cust), 0, n - 1)) do
    local f = redis.call('HMGET', K.contact(id), 'doc', 'st', 'ch', 'queue', 'agent', 'disp')
    if f[1] then
      out[#out + 1] = {doc = f[1], st = f[2], ch = f[3], queue = f[4], agent = f[5] or '',
                       disp = f[6] or ''}
    end
  end
  return out
end
