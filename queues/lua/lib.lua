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
--   * events are collected in EV as JSON, published once on the tenant's channel and returned;
--   * timers set by a script are collected in TIMERS and added by finish with one ZADD (so a
--     script never removes or reads a timer it set itself);
--   * numbers go to redis.call as strings where it is cheap to have them so (fmt('%d', n) or
--     the caller's own string): Redis formats a Lua number argument with "%.17g", which costs
--     more than the command itself for the small ones;
--   * every call of a C function (string.*, tonumber, cjson.*) costs about as much as a
--     hundred Lua operations, and every table and string made adds to the garbage collector's
--     work: replies and hot events are therefore written as JSON by hand (ids, reservation
--     ids, channels, states and queue names never need escaping: see queues/keys.py and
--     config/routing.py), documents stored as JSON go out as they are (the caller's decoder
--     reads them parsed), and a numeric string is made a number with `s + 0`.

local fmt = string.format
local find = string.find
local sub = string.sub

local EV = {}
-- contact id -> the contact's view JSON (or true: read it at the end), for offers' messages
local VIEWS = {}
local TIMERS = {}

-- An event given as a table (hot ones are written as JSON by hand: emit_json).
local function emit(ev)
  EV[#EV + 1] = cjson.encode(ev)
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
-- writes the reply [code, payload, events]. payload: JSON text, or a table to encode, or nil.
local function finish(code, payload)
  if #TIMERS > 0 then redis.call('ZADD', K.timers(), unpack(TIMERS)) end
  local ev = '[]'
  if #EV > 0 then
    ev = '[' .. table.concat(EV, ',') .. ']'
    local parts = {}
    for cid, view in pairs(VIEWS) do
      if view == true then view = redis.call('HGET', K.contact(cid), 'view') end
      if view then parts[#parts + 1] = '"' .. cid .. '":' .. view end
    end
    redis.call('PUBLISH', K.events(),
               '{"ev":' .. ev .. ',"views":{' .. table.concat(parts, ',') .. '}}')
  end
  if payload == nil then
    payload = 'false'
  elseif type(payload) == 'table' then
    payload = cjson.encode(payload)
  end
  if code == 0 then return '[0,' .. payload .. ',' .. ev .. ']' end
  return fmt('[%d,', code) .. payload .. ',' .. ev .. ']'
end

-- ---------------------------------------------------------------------------------- agents

-- An agent's hash: st, load (JSON {channel: n}), idle, tw (see add_waiting), 'of' its pending
-- offers (their reservation ids as the body of a JSON list: '"r1","r7"'), its profile 'prof'
-- (JSON [cap, excl, queue names]: one decode), its memberships 'qs' ([queue, strategy, level]:
-- decoded only when a free set's score needs them, in refresh_free), and, sent back as they are
-- and never decoded here, its document 'doc', capacity 'cap' and queue names 'qj'.
-- all: with doc, cap and qj too (for agent_out(aid, ag)). ag.idle stays the stored string
-- until the script sets a number (arithmetic reads either). ag.lj is ag.load as JSON (as stored,
-- or as last encoded) while it is known: whatever changes ag.load sets it to nil.
local function load_agent(aid, all)
  local f
  if all then
    f = redis.call('HMGET', K.agent(aid), 'st', 'prof', 'load', 'idle', 'tw', 'qs', 'of', 'doc',
                   'cap', 'qj')
  else
    f = redis.call('HMGET', K.agent(aid), 'st', 'prof', 'load', 'idle', 'tw', 'qs', 'of')
  end
  if not f[1] then return nil end
  local prof, lj = cjson.decode(f[2]), f[3]
  -- (an idle agent's load is '{}': no decode)
  return {id = aid, st = f[1], cap = prof[1], excl = prof[2], qn = prof[3],
          load = lj == '{}' and {} or cjson.decode(lj), lj = lj, idle = f[4], tw = f[5] or '0',
          qs_json = f[6], of = f[7] or '', doc = f[8], cap_json = f[9], qj = f[10]}
end

-- Stores the agent's state, load, idle time and offers.
local function save_agent(ag)
  local lj = ag.lj or cjson.encode(ag.load)
  ag.lj = lj
  redis.call('HSET', K.agent(ag.id), 'st', ag.st, 'load', lj, 'idle', fmt('%d', ag.idle),
             'of', ag.of)
end

-- ag.of without reservation rid.
local function drop_offer(of, rid)
  local q = '"' .. rid .. '"'
  if of == q then return '' end
  local at = find(of, q, 1, true)
  if not at then return of end
  if at == 1 then return sub(of, #q + 2) end
  return sub(of, 1, at - 2) .. sub(of, at + #q)
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
      if not ag.qs then ag.qs = cjson.decode(ag.qs_json) end
      for _, m in ipairs(ag.qs) do
        redis.call('ZADD', K.queue_free(m[1], ch), agent_score(ag, m[2], m[3]), ag.id)
      end
    elseif was == nil or was[ch] then
      for _, q in ipairs(ag.qn) do
        redis.call('ZREM', K.queue_free(q, ch), ag.id)
      end
    end
  end
end

-- The agent as JSON text (the decoders' agent_state); ag: loaded with load_agent(aid, true)
-- and as stored now (else it is loaded here).
local function agent_out(aid, ag)
  ag = ag or load_agent(aid, true)
  if not ag then return nil end
  return '{"doc":' .. ag.doc .. ',"st":"' .. ag.st .. '","cap":' .. ag.cap_json .. ',"load":' ..
         (ag.lj or cjson.encode(ag.load)) .. ',"queues":' .. ag.qj .. ',"offers":[' .. ag.of ..
         ']}'
end

local function emit_state(ag)
  EV[#EV + 1] = '{"t":"state","a":"' .. ag.id .. '","s":"' .. ag.st .. '","l":' ..
                (ag.lj or cjson.encode(ag.load)) .. '}'
end

-- ---------------------------------------------------------------------------------- contacts

-- A contact's hash: doc, view, st, ch, cc, key (sort key), enq, slt, cust (read by
-- resolve_customer), queue, 'steps' (its
-- workflow: JSON [{q = queues, a = agent ids, t = timeout ms (0: the last step), o = the offer
-- timeout of each queue of q, ao = the offer timeout for the agents; a and ao only when there
-- are agents}], read by advance_step alone) and 'cur', the current step alone (decoded as
-- c.s). It is stored without the fields
-- still at their defaults: step 0, agent '', res '', decl [] (agents who declined it), hold 0
-- (a callback's not-before), disp ''.
local function load_contact(cid)
  local f = redis.call('HMGET', K.contact(cid), 'st', 'cc', 'key', 'step', 'cur', 'agent',
                       'res', 'queue', 'enq', 'decl', 'slt', 'hold')
  if not f[1] then return nil end
  return {id = cid, st = f[1], cc = f[2], key = f[3] + 0, ks = f[3],
          step = (f[4] or 0) + 0, s = cjson.decode(f[5]), agent = f[6] or '',
          res = f[7] or '', queue = f[8], enq = f[9] + 0, enq_s = f[9],
          decl = f[10] and cjson.decode(f[10]) or {}, slt = f[11] + 0, hold = (f[12] or 0) + 0}
end

-- What reserve needs of a waiting contact (match_agent's pick, with its sort key as stored and
-- the channel of the set it waits in), and its view for the offer.
local function load_waiting(cid, ks, cc)
  local f = redis.call('HMGET', K.contact(cid), 'cur', 'queue', 'view')
  return {id = cid, ks = ks, cc = cc, s = cjson.decode(f[1]), queue = f[2], view = f[3]}
end

-- A contact waits in the waiting sets (queue_waiting, agent_waiting) of its current step as
-- member "<sort key>|<id>", scored by its sort key: match_agent reads the key from the member
-- (WITHSCORES would make Redis format each score with printf, and Lua parse it back). ks is
-- the sort key as stored, so the member is always spelt the same. queue_age: member id,
-- scored by the time it was enqueued (enq_s, as stored).
-- An agent's field tw counts the contacts waiting for it alone (in its agent_waiting sets), so
-- that match_agent reads those sets only when there are some.
local function add_waiting(c)
  local s = c.s
  local member = c.ks .. '|' .. c.id
  if s.a then
    for _, aid in ipairs(s.a) do
      if redis.call('ZADD', K.agent_waiting(aid, c.cc), c.ks, member) == 1 then
        redis.call('HINCRBY', K.agent(aid), 'tw', '1')
      end
    end
  end
  for _, q in ipairs(s.q) do
    redis.call('ZADD', K.queue_waiting(q, c.cc), c.ks, member)
    redis.call('ZADD', K.queue_age(q), c.enq_s, c.id)
  end
end

local function remove_waiting(c)
  local s = c.s
  local member = c.ks .. '|' .. c.id
  if s.a then
    for _, aid in ipairs(s.a) do
      if redis.call('ZREM', K.agent_waiting(aid, c.cc), member) == 1 then
        redis.call('HINCRBY', K.agent(aid), 'tw', '-1')
      end
    end
  end
  for _, q in ipairs(s.q) do
    redis.call('ZREM', K.queue_waiting(q, c.cc), member)
    redis.call('ZREM', K.queue_age(q), c.id)
  end
end

local function position(c)
  local s = c.s
  local key
  if #s.q > 0 then
    key = K.queue_waiting(s.q[1], c.cc)
  elseif s.a then
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
    -- (the day number, an integer below 2^53, concatenates exactly: no format, no floor)
    local key = K.queue_stats(queue) .. ':' .. (now - now % 86400000) / 86400000
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
local function waiting_out(c)
  local s, staffed = c.s, 0
  for _, q in ipairs(s.q) do
    staffed = math.max(staffed, redis.call('SCARD', K.queue_staffed(q)))
  end
  if s.a then
    for _, aid in ipairs(s.a) do
      local st = redis.call('HGET', K.agent(aid), 'st')
      if st and st ~= 'offline' then staffed = staffed + 1 end
    end
  end
  return position(c), staffed
end

-- A contact as JSON text (the decoders' contact_state), its stored document as it is.
local function contact_json(doc, st, ch, queue, agent, res, disp, pos, staffed)
  if disp == nil or disp == '' then disp = '""' else disp = cjson.encode(disp) end
  -- (a number in a concatenation is printed with sprintf: 0, the common case, is spelt out)
  if pos == 0 then pos = '0' end
  if staffed == 0 then staffed = '0' end
  return '{"doc":' .. doc .. ',"st":"' .. st .. '","ch":"' .. ch .. '","queue":"' .. queue ..
         '","agent":"' .. agent .. '","res":"' .. res .. '","disp":' .. disp .. ',"pos":' ..
         pos .. ',"staffed":' .. staffed .. '}'
end

local function contact_out(cid)
  local f = redis.call('HMGET', K.contact(cid), 'doc', 'st', 'ch', 'queue', 'agent', 'res',
                       'disp')
  if not f[1] then return nil end
  local pos, staffed = 0, 0
  if f[2] == 'queued' then pos, staffed = waiting_out(load_contact(cid)) end
  return contact_json(f[1], f[2], f[3], f[4], f[5] or '', f[6] or '', f[7], pos, staffed)
end

-- contact_out of a contact just created (c as stored, with its document and channel).
local function new_contact_out(c, doc, ch)
  local pos, staffed = 0, 0
  if c.st == 'queued' then pos, staffed = waiting_out(c) end
  return contact_json(doc, c.st, ch, c.queue, c.agent, c.res, nil, pos, staffed)
end

-- ---------------------------------------------------------------------------------- matching

-- Offers contact c to agent ag (timeout: the offer's, ms). fresh: c is being created (not
-- stored yet, in no waiting set; the caller stores it). defer: the caller saves the agent and
-- refreshes its free sets.
local function reserve(c, ag, queue, timeout, now, fresh, defer)
  -- (INCR's integer concatenates exactly while below 10^14)
  local rid = 'r' .. redis.call('INCR', K.seq())
  local was = nil
  if not defer then was = free_channels(ag) end
  local exp_s = fmt('%d', now + timeout)
  if queue ~= '' then c.queue = queue end
  if not fresh then
    remove_waiting(c)
    redis.call('HSET', K.contact(c.id), 'st', 'offered', 'agent', ag.id, 'res', rid,
               'queue', c.queue)
  end
  redis.call('HSET', K.reservation(rid), 'c', c.id, 'a', ag.id, 'st', 'pending', 'x', exp_s,
             'q', queue)
  ag.load[c.cc] = (ag.load[c.cc] or 0) + 1
  ag.lj = nil
  if ag.of == '' then ag.of = '"' .. rid .. '"' else ag.of = ag.of .. ',"' .. rid .. '"' end
  if not defer then
    -- only its load and offers changed
    ag.lj = cjson.encode(ag.load)
    redis.call('HSET', K.agent(ag.id), 'load', ag.lj, 'of', ag.of)
    refresh_free(ag, was)
  end
  TIMERS[#TIMERS + 1] = exp_s
  TIMERS[#TIMERS + 1] = 'o|' .. rid
  c.st, c.agent, c.res = 'offered', ag.id, rid
  EV[#EV + 1] = '{"t":"offer","a":"' .. ag.id .. '","r":"' .. rid .. '","c":"' .. c.id ..
                '","x":' .. exp_s .. ',"q":"' .. queue .. '"}'
  VIEWS[c.id] = c.view or true
end

-- Contact side: the first target agent, then the first queue of the step with a free agent.
-- fresh: see reserve.
local function match_contact(c, now, fresh)
  local s, declined = c.s, nil
  if #c.decl > 0 then
    declined = {}
    for _, aid in ipairs(c.decl) do declined[aid] = true end
  end
  if s.a then
    for _, aid in ipairs(s.a) do
      if not (declined and declined[aid]) then
        local ag = load_agent(aid)
        if ag and can_take(ag, c.cc) then
          reserve(c, ag, '', s.ao, now, fresh)
          return true
        end
      end
    end
  end
  local last = #c.decl == 0 and '0' or fmt('%d', #c.decl)
  for i, q in ipairs(s.q) do
    for _, aid in ipairs(redis.call('ZRANGE', K.queue_free(q, c.cc), '0', last)) do
      if not (declined and declined[aid]) then
        reserve(c, load_agent(aid), q, s.o[i], now, fresh)
        return true
      end
    end
  end
  return false
end

-- Agent side: the contact with the lowest sort key among everything the agent may take,
-- repeated while the agent has free capacity. defer: see reserve.
local function match_agent(ag, now, defer)
  local declined = K.agent_declined(ag.id)
  local ndecl = redis.call('SCARD', declined)
  local last = ndecl == 0 and '0' or fmt('%d', ndecl)
  local nq = #ag.qn
  local first = 1
  if ag.tw ~= '0' then first = 0 end
  while true do
    local best, best_key, best_ks, best_queue, best_ch = nil, nil, nil, nil, nil
    for ch, _ in pairs(ag.cap) do
      if can_take(ag, ch) then
        for i = first, nq do
          local key, queue
          if i == 0 then
            key, queue = K.agent_waiting(ag.id, ch), ''
          else
            queue = ag.qn[i]
            key = K.queue_waiting(queue, ch)
          end
          for _, member in ipairs(redis.call('ZRANGE', key, '0', last)) do
            local bar = find(member, '|', 1, true)
            local cid = sub(member, bar + 1)
            if ndecl == 0 or redis.call('SISMEMBER', declined, cid) == 0 then
              local ks = sub(member, 1, bar - 1)
              local score = ks + 0
              if best == nil or score < best_key or (score == best_key and str_lt(cid, best)) then
                best, best_key, best_ks, best_queue, best_ch = cid, score, ks, queue, ch
              end
              break
            end
          end
        end
      end
    end
    if best == nil then return end
    local c = load_waiting(best, best_ks, best_ch)
    local s = c.s
    local timeout = s.ao
    if best_queue ~= '' then
      for i, q in ipairs(s.q) do
        if q == best_queue then timeout = s.o[i] end
      end
    end
    reserve(c, ag, best_queue, timeout, now, false, defer)
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
  ag.lj = nil
  ag.idle = now
end

-- Ends a pending offer: marks the reservation and frees the agent's unit of capacity (not yet
-- saved: the caller may change the agent's state first, then save_agent). Returns the
-- contact, the agent and the agent's free channels before (for refresh_free).
local function end_offer(rid, status, now, ag)
  local r = redis.call('HMGET', K.reservation(rid), 'c', 'a')
  redis.call('HSET', K.reservation(rid), 'st', status)
  redis.call('ZREM', K.timers(), 'o|' .. rid)
  local c = load_contact(r[1])
  ag = ag or load_agent(r[2])
  ag.of = drop_offer(ag.of, rid)
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
