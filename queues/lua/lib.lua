-- lib.lua: helpers every transition script includes (after the generated key/code prelude).
--
-- Conventions (mirrored function by function in queues/memory.py):
--   * times are integer milliseconds, always passed in by the caller (`now`); scripts never
--     read the clock;
--   * a contact's sort key is enqueued_ms - priority_ms: lower is served first, everywhere;
--   * an agent sits in q:<queue>:f:<channel> exactly when can_take(agent, channel) holds, so
--     finding a free agent is one ZRANGE and never a scan over agents;
--   * events are collected in EV, published once on the tenant's channel and returned.

local EV = {}
local VIEWS = {}

local function emit(ev)
  EV[#EV + 1] = ev
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

-- Publishes the events (offers carry the contact's view for the agent) and encodes the reply.
local function finish(code, payload)
  if #EV > 0 then
    local parts = {}
    for cid, _ in pairs(VIEWS) do
      local view = redis.call('HGET', K.contact(cid), 'view')
      if view then parts[#parts + 1] = cjson.encode(cid) .. ':' .. view end
    end
    local msg = '{"ev":' .. cjson.encode(EV) .. ',"views":{' .. table.concat(parts, ',') .. '}}'
    redis.call('PUBLISH', K.events(), msg)
  end
  return cjson.encode({code, payload or false, EV})
end

-- ---------------------------------------------------------------------------------- agents

local function load_agent(aid)
  local f = redis.call('HMGET', K.agent(aid), 'st', 'cap', 'load', 'qs', 'excl', 'idle')
  if not f[1] then return nil end
  return {id = aid, st = f[1], cap = cjson.decode(f[2]), load = cjson.decode(f[3]),
          qs = cjson.decode(f[4]), excl = cjson.decode(f[5]), idle = tonumber(f[6])}
end

local function save_agent_load(ag)
  redis.call('HSET', K.agent(ag.id), 'load', cjson.encode(ag.load), 'idle', ag.idle)
end

local function can_take(ag, ch)
  if ag.st ~= 'available' then return false end
  if (ag.load[ch] or 0) >= (ag.cap[ch] or 0) then return false end
  for _, x in ipairs(ag.excl) do
    if (ag.load[x] or 0) > 0 then return false end
  end
  return true
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

local function refresh_free(ag)
  for _, m in ipairs(ag.qs) do
    for ch, _ in pairs(ag.cap) do
      if can_take(ag, ch) then
        redis.call('ZADD', K.queue_free(m[1], ch), agent_score(ag, m[2], m[3]), ag.id)
      else
        redis.call('ZREM', K.queue_free(m[1], ch), ag.id)
      end
    end
  end
end

local function agent_out(aid)
  local f = redis.call('HMGET', K.agent(aid), 'doc', 'st', 'cap', 'load', 'qs')
  if not f[1] then return nil end
  local names = {}
  for _, m in ipairs(cjson.decode(f[5])) do names[#names + 1] = m[1] end
  return {doc = f[1], st = f[2], cap = cjson.decode(f[3]), load = cjson.decode(f[4]),
          queues = names, offers = redis.call('SMEMBERS', K.agent_offers(aid))}
end

local function emit_state(ag)
  local load = {}
  for ch, n in pairs(ag.load) do load[ch] = n end
  emit({t = 'state', a = ag.id, s = ag.st, l = load})
end

-- ---------------------------------------------------------------------------------- contacts

local function load_contact(cid)
  local f = redis.call('HMGET', K.contact(cid), 'st', 'cc', 'key', 'step', 'steps', 'agent',
                       'res', 'queue', 'enq', 'decl', 'ot', 'slt', 'hold', 'cust')
  if not f[1] then return nil end
  return {id = cid, st = f[1], cc = f[2], key = tonumber(f[3]), step = tonumber(f[4]),
          steps = cjson.decode(f[5]), agent = f[6], res = f[7], queue = f[8],
          enq = tonumber(f[9]), decl = cjson.decode(f[10]), ot = cjson.decode(f[11]),
          slt = tonumber(f[12]), hold = tonumber(f[13]), cust = f[14]}
end

local function current_step(c)
  return c.steps[c.step + 1]
end

local function add_waiting(c)
  local s = current_step(c)
  for _, aid in ipairs(s.a) do
    redis.call('ZADD', K.agent_waiting(aid, c.cc), c.key, c.id)
  end
  for _, q in ipairs(s.q) do
    redis.call('ZADD', K.queue_waiting(q, c.cc), c.key, c.id)
    redis.call('ZADD', K.queue_age(q), c.enq, c.id)
  end
end

local function remove_waiting(c)
  local s = current_step(c)
  for _, aid in ipairs(s.a) do
    redis.call('ZREM', K.agent_waiting(aid, c.cc), c.id)
  end
  for _, q in ipairs(s.q) do
    redis.call('ZREM', K.queue_waiting(q, c.cc), c.id)
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
  local rank = redis.call('ZRANK', key, c.id)
  if rank then return rank + 1 end
  -- a contact held for a callback is not in the set but keeps its place
  return redis.call('ZCOUNT', key, '-inf', c.key) + 1
end

local function stats_key(queue, now)
  return K.queue_stats(queue) .. ':' .. math.floor(now / 86400000)
end

local function count(queue, now, field, by)
  if queue ~= '' then
    local key = stats_key(queue, now)
    redis.call('HINCRBY', key, field, by or 1)
    redis.call('EXPIRE', key, 8 * 86400)
  end
end

local function contact_out(cid)
  local f = redis.call('HMGET', K.contact(cid), 'doc', 'st', 'ch', 'queue', 'agent', 'res',
                       'disp', 'cc')
  if not f[1] then return nil end
  local out = {doc = f[1], st = f[2], ch = f[3], queue = f[4], agent = f[5], res = f[6],
               disp = f[7] or '', pos = 0, staffed = 0}
  if f[2] == 'queued' then
    local c = load_contact(cid)
    out.pos = position(c)
    local s = current_step(c)
    -- agents who could serve it: the best-staffed queue of its step (no scan over agents)
    for _, q in ipairs(s.q) do
      out.staffed = math.max(out.staffed, redis.call('SCARD', K.queue_staffed(q)))
    end
    for _, aid in ipairs(s.a) do
      local st = redis.call('HGET', K.agent(aid), 'st')
      if st and st ~= 'offline' then out.staffed = out.staffed + 1 end
    end
  end
  return out
end

-- ---------------------------------------------------------------------------------- matching

local function reserve(c, ag, queue, now)
  local rid = 'r' .. redis.call('INCR', K.seq())
  remove_waiting(c)
  local exp = now + (c.ot[queue] or c.ot[''])
  if queue ~= '' then c.queue = queue end
  redis.call('HSET', K.contact(c.id), 'st', 'offered', 'agent', ag.id, 'res', rid,
             'queue', c.queue)
  redis.call('HSET', K.reservation(rid), 'c', c.id, 'a', ag.id, 'st', 'pending', 'x', exp,
             'q', queue)
  redis.call('SADD', K.agent_offers(ag.id), rid)
  ag.load[c.cc] = (ag.load[c.cc] or 0) + 1
  save_agent_load(ag)
  refresh_free(ag)
  redis.call('ZADD', K.timers(), exp, 'o|' .. rid)
  c.st, c.agent, c.res = 'offered', ag.id, rid
  emit({t = 'offer', a = ag.id, r = rid, c = c.id, x = exp, q = queue})
  VIEWS[c.id] = true
end

-- Contact side: the first target agent, then the first queue of the step with a free agent.
local function match_contact(c, now)
  local s = current_step(c)
  local declined = set_of(c.decl)
  for _, aid in ipairs(s.a) do
    if not declined[aid] then
      local ag = load_agent(aid)
      if ag and can_take(ag, c.cc) then
        reserve(c, ag, '', now)
        return true
      end
    end
  end
  for _, q in ipairs(s.q) do
    for _, aid in ipairs(redis.call('ZRANGE', K.queue_free(q, c.cc), 0, #c.decl)) do
      if not declined[aid] then
        reserve(c, load_agent(aid), q, now)
        return true
      end
    end
  end
  return false
end

-- Agent side: the contact with the lowest sort key among everything the agent may take,
-- repeated while the agent has free capacity.
local function match_agent(ag, now)
  local ndecl = redis.call('SCARD', K.agent_declined(ag.id))
  while true do
    local best, best_key, best_queue = nil, nil, nil
    local function consider(key, queue)
      local top = redis.call('ZRANGE', key, 0, ndecl, 'WITHSCORES')
      for i = 1, #top, 2 do
        local cid = top[i]
        if ndecl == 0 or redis.call('SISMEMBER', K.agent_declined(ag.id), cid) == 0 then
          local score = tonumber(top[i + 1])
          if best == nil or score < best_key or (score == best_key and str_lt(cid, best)) then
            best, best_key, best_queue = cid, score, queue
          end
          return
        end
      end
    end
    for ch, _ in pairs(ag.cap) do
      if can_take(ag, ch) then
        consider(K.agent_waiting(ag.id, ch), '')
        for _, m in ipairs(ag.qs) do consider(K.queue_waiting(m[1], ch), m[1]) end
      end
    end
    if best == nil then return end
    reserve(load_contact(best), ag, best_queue, now)
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
-- saved: the caller may change the agent's state first). Returns the contact and the agent.
local function end_offer(rid, status, now, ag)
  local r = redis.call('HMGET', K.reservation(rid), 'c', 'a')
  redis.call('HSET', K.reservation(rid), 'st', status)
  redis.call('ZREM', K.timers(), 'o|' .. rid)
  redis.call('SREM', K.agent_offers(r[2]), rid)
  local c = load_contact(r[1])
  ag = ag or load_agent(r[2])
  release_capacity(ag, c.cc, now)
  return c, ag
end

local function forget_declines(c)
  for _, aid in ipairs(c.decl) do
    redis.call('SREM', K.agent_declined(aid), c.id)
  end
end

local function set_timer(due, member)
  redis.call('ZADD', K.timers(), due, member)
end

local function step_timer(c)
  return 's|' .. c.id .. '|' .. c.step
end

-- Moves an agent to a state and keeps the queues' staffed / available sets in step.
local function set_agent_state(ag, state)
  ag.st = state
  redis.call('HSET', K.agent(ag.id), 'st', state)
  for _, m in ipairs(ag.qs) do
    if state == 'offline' then
      redis.call('SREM', K.queue_staffed(m[1]), ag.id)
    else
      redis.call('SADD', K.queue_staffed(m[1]), ag.id)
    end
    if state == 'available' then
      redis.call('SADD', K.queue_available(m[1]), ag.id)
    else
      redis.call('SREM', K.queue_available(m[1]), ag.id)
    end
  end
end

-- The contact is done: the agent's capacity frees and the agent takes the next contact.
local function close_contact(c, now)
  redis.call('HSET', K.contact(c.id), 'st', 'completed', 'ended', now)
  redis.call('HDEL', K.contact(c.id), 'view')
  forget_declines(c)
  local ag = load_agent(c.agent)
  release_capacity(ag, c.cc, now)
  save_agent_load(ag)
  refresh_free(ag)
  emit_state(ag)
  match_agent(ag, now)
end

-- ---------------------------------------------------------------------------------- customers

-- A customer's last n contacts, newest first, each as it stands now.
local function history_out(cust, n)
  local out = {}
  for _, id in ipairs(redis.call('LRANGE', K.customer_history(cust), 0, n - 1)) do
    local f = redis.call('HMGET', K.contact(id), 'doc', 'st', 'ch', 'queue', 'agent', 'disp')
    if f[1] then
      out[#out + 1] = {doc = f[1], st = f[2], ch = f[3], queue = f[4], agent = f[5],
                       disp = f[6] or ''}
    end
  end
  return out
end
