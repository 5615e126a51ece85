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
--     script never reads a timer it set itself, and drop_timer takes one out of TIMERS too);
--   * numbers go to redis.call as strings where it is cheap to have them so (fmt('%d', n) or
--     the caller's own string): Redis formats a Lua number argument with "%.17g", which costs
--     more than the command itself for the small ones;
--   * every call of a C function (string.*, tonumber, cjson.*) costs about as much as a
--     hundred Lua operations, and every table and string made adds to the garbage collector's
--     work: replies and hot events are therefore written as JSON by hand (ids, reservation
--     ids, channels, states and queue names never need escaping: see queues/keys.py and
--     config/routing.py), documents stored as JSON go out as they are (the caller's decoder
--     reads them parsed), and a numeric string is made a number with `s + 0`;
--   * a number concatenated to a string is printed with "%.14g", which costs twice
--     fmt('%d', n): integers are formatted with fmt;
--   * each key set in a table costs (a table constructor's fields too), and so does each
--     closure made: the script body runs again on every call, its helpers defined anew (each
--     script is sent with the helpers it uses only, so a helper used once in a hot script is
--     written inline there instead).

local fmt = string.format
local find = string.find
local sub = string.sub
local byte = string.byte

-- (room for four without growing the table: a table grows 0, 1, 2, 4, each time at a cost)
local EV = {nil, nil, nil, nil}
-- contact id -> the contact's view JSON (or true: read it at the end), for offers' messages
local VIEWS = {}
local TIMERS = {nil, nil, nil, nil}

-- An event given as a table (hot ones are written as JSON by hand: emit_json).
local function emit(ev)
  EV[#EV + 1] = cjson.encode(ev)
end

local function set_timer(due, member)
  TIMERS[#TIMERS + 1] = due
  TIMERS[#TIMERS + 1] = member
end

-- Removes a timer, also from those this script has yet to add: one sweep may offer a contact
-- to an agent and set that agent offline, rescinding the offer, before finish adds the timers.
local function drop_timer(member)
  for i = #TIMERS, 2, -2 do
    if TIMERS[i] == member then
      table.remove(TIMERS, i)
      table.remove(TIMERS, i - 1)
    end
  end
  redis.call('ZREM', K.timers(), member)
end

-- Byte-wise "a < b": Lua's own string comparison follows the server's locale (strcoll).
local function str_lt(a, b)
  local n = #a
  if #b < n then n = #b end
  for i = 1, n do
    local x, y = byte(a, i), byte(b, i)
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
    if #EV == 1 then ev = '[' .. EV[1] .. ']' else ev = '[' .. table.concat(EV, ',') .. ']' end
    -- (views: most often none or one, so no table to concatenate)
    local views = ''
    for cid, view in pairs(VIEWS) do
      if view == true then view = redis.call('HGET', K.contact(cid), 'view') end
      if view then
        if views ~= '' then views = views .. ',' end
        views = views .. '"' .. cid .. '":' .. view
      end
    end
    redis.call('PUBLISH', K.events(), '{"ev":' .. ev .. ',"views":{' .. views .. '}}')
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
-- offers (their reservation ids as the body of a JSON list: '"r1","r7"'), 'cs' the contacts it
-- holds, assigned or wrapping (their ids written the same way, in the order accepted:
-- accept_reservation adds one, close_contact drops it), its profile 'prof'
-- (JSON [cap, queue names (each once), excl], excl only when it has channels: one decode), its
-- memberships 'qs' ([queue, strategy, level]: decoded only when a free set's score needs them,
-- in refresh_free), and, sent back as they are and never decoded here, its document 'doc',
-- capacity 'cap' and queue names 'qj' (as given).
-- all: with doc, cap, qj and cs too (for agent_out(aid, ag)). ag.idle stays the stored string
-- until the script sets a number (arithmetic reads either). ag.lj is ag.load as JSON (as stored,
-- or as last encoded) while it is known: whatever changes ag.load sets it to nil.
local function load_agent(aid, all)
  local f
  if all then
    f = redis.call('HMGET', K.agent(aid), 'st', 'prof', 'load', 'idle', 'tw', 'qs', 'of', 'doc',
                   'cap', 'qj', 'cs')
  else
    f = redis.call('HMGET', K.agent(aid), 'st', 'prof', 'load', 'idle', 'tw', 'qs', 'of')
  end
  if not f[1] then return nil end
  local prof, lj = cjson.decode(f[2]), f[3]
  -- (an idle agent's load is '{}': no decode)
  local ag = {id = aid, st = f[1], cap = prof[1], qn = prof[2], pj = f[2],
              load = lj == '{}' and {} or cjson.decode(lj), lj = lj, idle = f[4],
              tw = f[5] or '0', qs_json = f[6], of = f[7] or ''}
  -- (each key set in a table costs, even to nil: these only when there are some, or asked for)
  if prof[3] then ag.excl = prof[3] end
  if all then ag.doc, ag.cap_json, ag.qj, ag.cs = f[8], f[9], f[10], f[11] or '' end
  return ag
end

-- Stores the agent's state, load, idle time and offers; and cs, the contacts it holds, when
-- given (load_agent reads cs for agent_out alone: close_contact, which changes it, passes it).
local function save_agent(ag, cs)
  local lj = ag.lj or cjson.encode(ag.load)
  ag.lj = lj
  if cs then
    redis.call('HSET', K.agent(ag.id), 'st', ag.st, 'load', lj, 'idle', fmt('%d', ag.idle),
               'of', ag.of, 'cs', cs)
  else
    redis.call('HSET', K.agent(ag.id), 'st', ag.st, 'load', lj, 'idle', fmt('%d', ag.idle),
               'of', ag.of)
  end
end

-- ag.of without reservation rid (and, the same way, an agent's cs without a contact id).
local function drop_offer(of, rid)
  local q = '"' .. rid .. '"'
  if of == q then return '' end
  local at = find(of, q, 1, true)
  if not at then return of end
  if at == 1 then return sub(of, #q + 2) end
  return sub(of, 1, at - 2) .. sub(of, at + #q)
end

-- (a contact on an exclusive channel blocks offers on the other channels; on its own channel
-- the capacity alone decides: voice, or up to three chats)
local function can_take(ag, ch)
  if ag.st ~= 'available' then return false end
  if (ag.load[ch] or 0) >= (ag.cap[ch] or 0) then return false end
  local excl = ag.excl
  if excl then
    for _, x in ipairs(excl) do
      if x ~= ch and (ag.load[x] or 0) > 0 then return false end
    end
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

-- Puts the agent in (with its current score) or takes it out of each free set of its queues.
-- `was`, free_channels(ag) before the change, skips the sets it was not in and is not now.
local function refresh_free(ag, was)
  local scores = nil
  for ch, _ in pairs(ag.cap) do
    if can_take(ag, ch) then
      if scores == nil then
        if not ag.qs then ag.qs = cjson.decode(ag.qs_json) end
        -- the agent's score in each queue (strategy m[2], skill level m[3]): lower is offered
        -- first; idle time breaks ties. Worked out once for all channels, and an integer made
        -- text here: Redis would format a number argument with "%.17g" for every set (queues
        -- times channels), which costs more than the ZADD.
        scores = {}
        for i, m in ipairs(ag.qs) do
          local score, strategy = ag.idle, m[2]
          if strategy == 'most_skilled' then
            score = ag.idle - m[3] * 1e13
          elseif strategy == 'least_busy' then
            local used, total = 0, 0
            for c, n in pairs(ag.cap) do
              total = total + n
              used = used + (ag.load[c] or 0)
            end
            local pct = 0
            if total > 0 then pct = math.floor(used * 100 / total) end
            score = ag.idle + pct * 1e13
          end
          if type(score) == 'number' and score % 1 == 0 and math.abs(score) < 2^53 then
            score = fmt('%d', score)
          end
          scores[i] = score
        end
      end
      for i, m in ipairs(ag.qs) do
        redis.call('ZADD', K.queue_free(m[1], ch), scores[i], ag.id)
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
         '],"contacts":[' .. ag.cs .. ']}'
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
-- are agents}], read by advance_step and leave_dead_step alone) and 'cur', the current step alone (decoded as
-- c.s). It is stored without the fields
-- still at their defaults: step 0, agent '', res '', decl [] (agents who declined it), hold 0
-- (a callback's not-before), disp ''.
local function load_contact(cid)
  local f = redis.call('HMGET', K.contact(cid), 'st', 'cc', 'key', 'step', 'cur', 'agent',
                       'res', 'queue', 'enq', 'decl', 'slt', 'hold')
  if not f[1] then return nil end
  -- (an ended contact has no sort key and no current step: see close_contact)
  local ks = f[3] or '0'
  return {id = cid, st = f[1], cc = f[2], key = ks + 0, ks = ks,
          step = (f[4] or 0) + 0, s = f[5] and cjson.decode(f[5]) or {q = {}, t = 0},
          agent = f[6] or '',
          res = f[7] or '', queue = f[8], enq = f[9] + 0, enq_s = f[9],
          decl = (f[10] and f[10] ~= '[]') and cjson.decode(f[10]) or {}, slt = f[11] + 0,
          hold = (f[12] or 0) + 0}
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

-- A scheduled callback (hold > 0) is out of line until its time, but the queues of its current
-- step list it in queue_held (member id, scored by its not-before), so their figures and a
-- config reload still see it.
local function add_held(c)
  for _, q in ipairs(c.s.q) do redis.call('ZADD', K.queue_held(q), c.hold, c.id) end
end

local function remove_held(c)
  for _, q in ipairs(c.s.q) do redis.call('ZREM', K.queue_held(q), c.id) end
end

local function stats_key(queue, now)
  return K.queue_stats(queue) .. fmt(':%d', math.floor(now / 86400000))
end

-- Adds `by` (an integer; default 1) to a counter of the queue's day. The first increment of a
-- field is when the day's hash may be new: it then gets its expiry (8 days).
local function count(queue, now, field, by)
  if queue ~= '' then
    -- (an integer: '%d' formats it exactly, and at half the cost of concatenating a number)
    local key = K.queue_stats(queue) .. fmt(':%d', (now - now % 86400000) / 86400000)
    local new
    if by then
      new = redis.call('HINCRBY', key, field, fmt('%d', by)) == by
    else
      new = redis.call('HINCRBY', key, field, '1') == 1
    end
    if new then redis.call('EXPIRE', key, '691200') end
  end
end

-- A contact's place in one set it waits in: its rank there, or, for a callback held out of
-- line (not in the set, but keeping its place), one more than the contacts up to its sort key.
local function place_in(key, c, member)
  if not c.held then
    local rank = redis.call('ZRANK', key, member)
    if rank then return rank + 1 end
  end
  return redis.call('ZCOUNT', key, '-inf', c.ks) + 1
end

-- A waiting contact's place in line, how many agents could serve it (the best-staffed queue of
-- its step, plus the agents it names who are signed in: no scan over agents) and its lines.
-- It waits in every set of its step and is served by whichever reaches it first, so its place
-- is the best of its places in the sets somebody staffs for it (of all, when nobody does): one
-- ZRANK per set (a step names few). lines: per set,
-- [queue ('' for a named agent), place, capacity staffed there for it (the contacts on its
-- channel the agents signed in there can hold at once)], as the body of a JSON list (the caller
-- estimates each line's wait; queue names never need escaping).
local function waiting_out(c)
  local s, staffed, pos, best, lines = c.s, 0, nil, nil, ''
  local member = c.ks .. '|' .. c.id
  -- (the staffing fields naming the contact's channel, with capacity on it: see staff_field)
  local mine = '"' .. c.cc .. '":(%d+)'
  for _, q in ipairs(s.q) do
    local here, slots = 0, 0
    local f = redis.call('HGETALL', K.queue_staffing(q))
    for i = 1, #f, 2 do
      local n = math.floor(f[i + 1] / 4294967296)
      if n > 0 then
        local cap = string.match(f[i], mine)
        if cap and cap ~= '0' then here, slots = here + n, slots + n * cap end
      end
    end
    if here > staffed then staffed = here end
    local at = place_in(K.queue_waiting(q, c.cc), c, member)
    if pos == nil or at < pos then pos = at end
    if here > 0 and (best == nil or at < best) then best = at end
    if lines ~= '' then lines = lines .. ',' end
    lines = lines .. '["' .. q .. fmt('",%d,%d]', at, slots)
  end
  if s.a then
    local named = 0
    for _, aid in ipairs(s.a) do
      local slots = 0
      local f = redis.call('HMGET', K.agent(aid), 'st', 'prof')
      if f[1] and f[1] ~= 'offline' then slots = cjson.decode(f[2])[1][c.cc] or 0 end
      if slots > 0 then named = named + 1 end
      local at = place_in(K.agent_waiting(aid, c.cc), c, member)
      if pos == nil or at < pos then pos = at end
      if slots > 0 and (best == nil or at < best) then best = at end
      if lines ~= '' then lines = lines .. ',' end
      lines = lines .. fmt('["",%d,%d]', at, slots)
    end
    staffed = staffed + named
  end
  return best or pos or 1, staffed, lines
end

-- A contact as JSON text (the decoders' contact_state), its stored document as it is.
-- hold: a held callback's not-before (ms, as stored), else nil.
-- lines: a waiting contact's (waiting_out), else nil.
local function contact_json(doc, st, ch, queue, agent, res, disp, pos, staffed, hold, lines)
  if disp == nil or disp == '' then disp = '""' else disp = cjson.encode(disp) end
  -- (a number in a concatenation is printed with sprintf: 0, the common case, is spelt out)
  if pos == 0 then pos = '0' end
  if staffed == 0 then staffed = '0' end
  local tail = '}'
  if lines then tail = ',"lines":[' .. lines .. ']}' end
  if hold then tail = ',"hold":' .. hold .. tail end
  return '{"doc":' .. doc .. ',"st":"' .. st .. '","ch":"' .. ch .. '","queue":"' .. queue ..
         '","agent":"' .. agent .. '","res":"' .. res .. '","disp":' .. disp .. ',"pos":' ..
         pos .. ',"staffed":' .. staffed .. tail
end

local function contact_out(cid)
  local f = redis.call('HMGET', K.contact(cid), 'doc', 'st', 'ch', 'queue', 'agent', 'res',
                       'disp')
  if not f[1] then return nil end
  local pos, staffed, hold, lines = 0, 0, nil, nil
  if f[2] == 'queued' then
    -- what waiting_out reads of it (as load_contact would), and a held callback's not-before
    local w = redis.call('HMGET', K.contact(cid), 'cur', 'cc', 'key', 'hold')
    if w[4] and w[4] ~= '0' then hold = w[4] end
    pos, staffed, lines = waiting_out({id = cid, s = cjson.decode(w[1]), cc = w[2], ks = w[3],
                                       held = hold ~= nil})
  end
  return contact_json(f[1], f[2], f[3], f[4], f[5] or '', f[6] or '', f[7], pos, staffed, hold,
                      lines)
end

-- ---------------------------------------------------------------------------------- matching

-- Offers contact c to agent ag (timeout: the offer's, ms). Contact side, it sets c.st, c.agent,
-- c.res and c.queue alone: the caller stores the contact (and takes it out of the waiting sets
-- if it waits in them). defer: the caller saves the agent and refreshes its free sets.
local function reserve(c, ag, queue, timeout, now, defer)
  -- ('%d' costs half what concatenating a number does)
  local rid = fmt('r%d', redis.call('INCR', K.seq()))
  local was = nil
  if not defer then was = free_channels(ag) end
  local exp_s = fmt('%d', now + timeout)
  if queue ~= '' then c.queue = queue end
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

-- The agent for a contact's current step: the first target agent that can take it, then the
-- first queue of the step with a free agent, passing over agents who declined it (c.decl,
-- absent for a new contact). Returns agent, queue ('' for a target agent), offer timeout; or
-- nothing when nobody is free.
local function pick_agent(c)
  local s, decl, declined = c.s, c.decl, nil
  if decl and #decl > 0 then
    declined = {}
    for _, aid in ipairs(decl) do declined[aid] = true end
  end
  if s.a then
    for _, aid in ipairs(s.a) do
      if not (declined and declined[aid]) then
        local cand = load_agent(aid)
        if cand and can_take(cand, c.cc) then return cand, '', s.ao end
      end
    end
  end
  local last = declined and fmt('%d', #decl) or '0'
  for i, q in ipairs(s.q) do
    for _, aid in ipairs(redis.call('ZRANGE', K.queue_free(q, c.cc), '0', last)) do
      if not (declined and declined[aid]) then return load_agent(aid), q, s.o[i] end
    end
  end
end

-- Contact side, for a contact waiting in line (enqueue_contact matches a new contact itself).
local function match_contact(c, now)
  local ag, queue, timeout = pick_agent(c)
  if not ag then return false end
  reserve(c, ag, queue, timeout, now)
  remove_waiting(c)
  redis.call('HSET', K.contact(c.id), 'st', 'offered', 'agent', ag.id, 'res', c.res,
             'queue', c.queue)
  return true
end

-- Agent side: the contact with the lowest sort key among everything the agent may take,
-- repeated while the agent has free capacity. defer: see reserve.
local function match_agent(ag, now, defer)
  local nq = #ag.qn
  local first = 1
  if ag.tw ~= '0' then first = 0 end
  -- An agent with many sets to read (its queues times the channels it can take) first asks
  -- whether anything waits in its queues at all, in one call: a queue's age set holds every
  -- contact waiting in it, whatever the channel. When nothing does (a well-staffed center,
  -- most of the time) that replaces a ZRANGE per queue and channel.
  if nq > 1 then
    local sets = 0
    for ch, _ in pairs(ag.cap) do
      if can_take(ag, ch) then sets = sets + nq end
    end
    if sets > 4 then
      local ages = {}
      for i, q in ipairs(ag.qn) do ages[i] = K.queue_age(q) end
      if redis.call('EXISTS', unpack(ages)) == 0 then
        if first == 1 then return end
        nq = 0
      end
    end
  end
  local declined = K.agent_declined(ag.id)
  local ndecl = redis.call('SCARD', declined)
  local last = ndecl == 0 and '0' or fmt('%d', ndecl)
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
    -- what reserve needs of the contact (its sort key as stored, the channel of the set it
    -- waits in), and its view for the offer
    local f = redis.call('HMGET', K.contact(best), 'cur', 'queue', 'view')
    -- (st, agent and res, which reserve sets, in the constructor too: the table is made with
    -- room for them, not grown)
    local c = {id = best, ks = best_ks, cc = best_ch, s = cjson.decode(f[1]), queue = f[2],
               view = f[3], st = 'queued', agent = '', res = ''}
    local s = c.s
    local timeout = s.ao
    if best_queue ~= '' then
      for i, q in ipairs(s.q) do
        if q == best_queue then timeout = s.o[i] end
      end
    end
    reserve(c, ag, best_queue, timeout, now, defer)
    remove_waiting(c)
    redis.call('HSET', K.contact(c.id), 'st', 'offered', 'agent', ag.id, 'res', c.res,
               'queue', c.queue)
  end
end

local function step_timer(c)
  return fmt('s|%s|%d', c.id, c.step)
end

-- The queue contact c counts in at its current step: the one it counts in now if that is
-- among the step's queues, else the step's first (a step without queues keeps it).
local function step_queue(c)
  local q = c.s.q
  if not q[1] then return c.queue end
  for _, name in ipairs(q) do
    if name == c.queue then return name end
  end
  return q[1]
end

-- Whether nobody can answer contact c's current step: it names agents (last_agent,
-- preferred_agents) and no queue, and each of them is unknown, offline, without capacity on the
-- contact's channel, or has declined it (c.decl). Such a step is passed at once, not waited
-- out: its agents may come back, but its timeout is the wait the rule allows for them, not for
-- an agent nobody has.
local function step_dead(c)
  local s, decl = c.s, c.decl
  if s.q[1] or not s.a then return false end
  for _, aid in ipairs(s.a) do
    local declined = false
    if decl then
      for _, d in ipairs(decl) do
        if d == aid then declined = true end
      end
    end
    if not declined then
      local f = redis.call('HMGET', K.agent(aid), 'st', 'prof')
      if f[1] and f[1] ~= 'offline' and (cjson.decode(f[2])[1][c.cc] or 0) > 0 then
        return false
      end
    end
  end
  return true
end

-- Moves c past its current step, which step_dead holds, and past each dead step after it, to
-- its last step at most (steps: its workflow, decoded). Sets c.step, c.s and c.queue
-- (step_queue); stores nothing. Returns whether it moved.
local function pass_dead(c, steps)
  if c.step + 1 >= #steps then return false end
  repeat
    c.step = c.step + 1
    c.s = steps[c.step + 1]
  until c.step + 1 >= #steps or not step_dead(c)
  c.queue = step_queue(c)
  return true
end

-- A contact in line (waiting, or held for a callback) whose current step nobody can answer
-- moves on (pass_dead): out of the step's sets and timer, into the new step's. Returns whether
-- it moved; the caller then looks for an agent for it.
local function leave_dead_step(c, now)
  if not step_dead(c) then return false end
  local steps = cjson.decode(redis.call('HGET', K.contact(c.id), 'steps'))
  if c.step + 1 >= #steps then return false end
  local held = c.hold > 0
  if held then remove_held(c) else remove_waiting(c) end
  if c.s.t > 0 then drop_timer(step_timer(c)) end
  pass_dead(c, steps)
  redis.call('HSET', K.contact(c.id), 'step', c.step, 'queue', c.queue, 'cur', cjson.encode(c.s))
  if c.s.t > 0 then set_timer(now + c.s.t, step_timer(c)) end
  if held then add_held(c) else add_waiting(c) end
  return true
end

-- Contacts put back in line, each offered its best agent, best first (each agent must receive
-- the best contact it may take, not the first one handled).
local function match_best_first(cs, now)
  table.sort(cs, function(a, b)
    return a.key < b.key or (a.key == b.key and str_lt(a.id, b.id))
  end)
  for _, c in ipairs(cs) do match_contact(c, now) end
end

-- The channels an agent has capacity on (queues/contract.py CAPACITY_CHANNELS).
local CAPACITY_CHANNELS = {'voice', 'chat', 'email', 'sms'}

-- The contacts waiting for agent aid by name on the given channels, after it went offline or
-- lost its capacity there: those whose step nobody else can answer move on (leave_dead_step)
-- and are added to the list moved, for match_best_first.
local function leave_agent_lines(aid, channels, now, moved)
  for _, ch in ipairs(channels) do
    for _, member in ipairs(redis.call('ZRANGE', K.agent_waiting(aid, ch), '0', '-1')) do
      local c = load_contact(sub(member, find(member, '|', 1, true) + 1))
      if c and c.st == 'queued' and c.hold == 0 and leave_dead_step(c, now) then
        moved[#moved + 1] = c
      end
    end
  end
end

-- Puts an offered contact back in line with its original sort key (and on past a step nobody
-- can answer any more: leave_dead_step).
local function requeue(c, now)
  c.st, c.agent, c.res = 'queued', '', ''
  -- (a contact whose step moved on while it was on offer waits in the new step's queues)
  c.queue = step_queue(c)
  redis.call('HSET', K.contact(c.id), 'st', 'queued', 'agent', '', 'res', '', 'queue', c.queue)
  if c.hold == 0 then add_waiting(c) end
  leave_dead_step(c, now)
end

local function release_capacity(ag, ch, now)
  ag.load[ch] = (ag.load[ch] or 0) - 1
  if ag.load[ch] <= 0 then ag.load[ch] = nil end
  ag.lj = nil
  ag.idle = now
end

-- How long (s) a reservation's hash outlives the offer once it ends (accepted, rejected, timed
-- out, rescinded): a late accept or reject within a day still hears why it cannot be, and the
-- hashes of old offers do not pile up.
local ENDED_KEEP_S = '86400'

-- Ends a pending offer: marks the reservation and frees the agent's unit of capacity (not yet
-- saved: the caller may change the agent's state first, then save_agent). Returns the
-- contact, the agent and the agent's free channels before (for refresh_free).
local function end_offer(rid, status, now, ag)
  local r = redis.call('HMGET', K.reservation(rid), 'c', 'a')
  redis.call('HSET', K.reservation(rid), 'st', status)
  redis.call('EXPIRE', K.reservation(rid), ENDED_KEEP_S)
  drop_timer('o|' .. rid)
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

-- What an agent in state st adds to its field of q:<queue>:staffing in each of its queues: a
-- field holds two counts in one integer, (agents not offline) * 2^32 + (agents available), so
-- that a change of state is one HINCRBY per queue.
local function staffing(st)
  if st == 'available' then return 4294967297 elseif st == 'offline' then return 0 end
  return 4294967296
end

-- An agent's field in q:<queue>:staffing: its capacity as JSON, as upsert_agent was given it
-- ('{"voice":1,"chat":3}', the head of its profile prof), so that the members staffed for a
-- contact on a channel, and the contacts they can hold at once, are read from the fields
-- naming that channel (waiting_out), and a change of state still writes one field per queue.
-- (Cut from the profile's text: building it from the decoded capacity cost an available
-- decision 10k instructions.)
local function staff_field(pj)
  return string.match(pj, '^%[(%b{})')
end

-- Moves an agent to a state and keeps its queues' staffing counters in step; save_agent stores
-- it.
local function set_agent_state(ag, state)
  local by = staffing(state) - staffing(ag.st)
  ag.st = state
  if by ~= 0 then
    local field = staff_field(ag.pj)
    by = fmt('%d', by)
    for _, q in ipairs(ag.qn) do redis.call('HINCRBY', K.queue_staffing(q), field, by) end
  end
end

-- A customer's history list, once longer than this, is pruned when one of its contacts ends:
-- readers take history_length (at most 200) from its head, erasure reads all of it.
local HISTORY_PRUNE_AT = 256
-- how many ids a prune looks at, from the list's old end
local PRUNE_BATCH = 16

-- An ended contact (whose view and callback number its caller dropped) is kept for `keep`
-- seconds (as a string; '0': for good), and so is its customer's history list from now on: a
-- customer not heard from for that long loses the list, which names every contact still kept
-- for the customer (erasure reads all of it). A long list loses the ids at its old end whose
-- contact has expired, PRUNE_BATCH at most, so a customer who keeps calling does not grow it
-- without bound; the check costs one LRANGE and one EXISTS while the oldest is still kept.
local function keep_ended(cid, keep)
  if keep == '0' then return end
  redis.call('EXPIRE', K.contact(cid), keep)
  local cust = redis.call('HGET', K.contact(cid), 'cust')
  if not cust or cust == '' then return end
  local h = K.customer_history(cust)
  redis.call('EXPIRE', h, keep)
  if redis.call('LLEN', h) <= HISTORY_PRUNE_AT then return end
  local tail = redis.call('LRANGE', h, -PRUNE_BATCH, -1)
  if redis.call('EXISTS', K.contact(tail[#tail])) == 1 then return end
  local kept = {}
  for _, id in ipairs(tail) do
    if redis.call('EXISTS', K.contact(id)) == 1 then kept[#kept + 1] = id end
  end
  redis.call('LTRIM', h, 0, -#tail - 1)
  if #kept > 0 then redis.call('RPUSH', h, unpack(kept)) end
end

-- The contact is done: it leaves the contacts the agent holds, the agent's capacity frees and
-- the agent takes the next contact (its free sets written once, after). Its view, a callback's
-- number, its workflow, current step and sort key go (nothing reads them once it has ended,
-- and they are most of what it would keep), and it is kept `keep` seconds (keep_ended).
local function close_contact(c, now, keep)
  redis.call('HSET', K.contact(c.id), 'st', 'completed', 'ended', now)
  redis.call('HDEL', K.contact(c.id), 'view', 'cb', 'steps', 'cur', 'key')
  keep_ended(c.id, keep)
  forget_declines(c)
  local ag = load_agent(c.agent)
  local cs = drop_offer(redis.call('HGET', K.agent(c.agent), 'cs') or '', c.id)
  local was = free_channels(ag)
  release_capacity(ag, c.cc, now)
  match_agent(ag, now, true)
  emit_state(ag)  -- after the offers: the load they take is in it
  save_agent(ag, cs)
  refresh_free(ag, was)
end

-- The pending offers a change of agent ag's profile leaves invalid are rescinded, as going
-- offline rescinds them (neither the agent's reject nor its timeout): one made from a queue it
-- is no longer a member of (an offer by name, queue '', is not), one on a channel where what it
-- holds and is offered exceeds its capacity, and one blocked by a channel newly exclusive
-- (gained: a list) on which it has another contact. ag.cap, ag.qn and ag.excl are the new
-- ones. Newest first, each judged with the load the newer ones left: a cut of one unit
-- rescinds the newest offer on that channel only. Returns the contacts, to go back in line
-- once the caller has stored the agent.
local function rescind_invalid(ag, gained, now)
  local out = {}
  if ag.of == '' then return out end
  local member = set_of(ag.qn)
  local offers = cjson.decode('[' .. ag.of .. ']')
  -- (ids "r<n>": the longer is the newer, then byte order)
  table.sort(offers, function(a, b) return #a > #b or (#a == #b and str_lt(b, a)) end)
  for _, rid in ipairs(offers) do
    local r = redis.call('HMGET', K.reservation(rid), 'c', 'q')
    local ch = redis.call('HGET', K.contact(r[1]), 'cc')
    local load, queue = ag.load, r[2] or ''
    local invalid = (queue ~= '' and not member[queue]) or (load[ch] or 0) > (ag.cap[ch] or 0)
    for _, x in ipairs(gained) do
      if x ~= ch and (load[x] or 0) > 0 then invalid = true end
    end
    if invalid then
      local c = end_offer(rid, 'rescinded', now, ag)
      emit({t = 'rescind', a = ag.id, r = rid, c = c.id, why = 'agent_changed'})
      out[#out + 1] = c
    end
  end
  return out
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

-- ---------------------------------------------------------------------------------- presence

-- Sets a loaded agent (not offline) offline: its pending offers are rescinded and their
-- contacts go back in line and look for other agents, best first, as do the contacts that
-- waited for this agent alone (a step nobody else can answer moves on).
local function go_offline(ag, now)
  local aid = ag.id
  local was = free_channels(ag)
  local requeued = {}
  local offers = cjson.decode('[' .. ag.of .. ']')
  table.sort(offers, str_lt)
  for _, rid in ipairs(offers) do
    local c = end_offer(rid, 'rescinded', now, ag)
    emit({t = 'rescind', a = aid, r = rid, c = c.id, why = 'agent_offline'})
    requeued[#requeued + 1] = c
  end
  set_agent_state(ag, 'offline')
  emit_state(ag)
  save_agent(ag)
  refresh_free(ag, was)
  -- (back in line once the agent is stored offline: a step waiting for it alone is passed)
  for _, c in ipairs(requeued) do requeue(c, now) end
  if ag.tw ~= '0' then leave_agent_lines(aid, CAPACITY_CHANNELS, now, requeued) end
  match_best_first(requeued, now)
end

-- The instance is heard from at now: live until now + timeout (ms), when its sweep timer
-- "i|<instance>" falls due. Returns whether it had a record before (false: never seen, or
-- swept since, which dropped its sockets).
local function instance_seen(inst, now, timeout)
  local known = redis.call('ZSCORE', K.instances(), inst) ~= false
  local due = fmt('%d', now + timeout)
  redis.call('ZADD', K.instances(), due, inst)
  set_timer(due, 'i|' .. inst)
  return known
end

-- Records that instance inst holds n sockets of agent aid (0: none, the entries go).
local function set_sockets(aid, inst, n)
  if n > 0 then
    redis.call('HSET', K.agent_sockets(aid), inst, fmt('%d', n))
    redis.call('ZADD', K.instance_agents(inst), '0', aid)
  else
    redis.call('HDEL', K.agent_sockets(aid), inst)
    redis.call('ZREM', K.instance_agents(inst), aid)
  end
end

-- Whether agent aid has a socket on a live instance (one heard from within its timeout).
local function has_live_socket(aid, now)
  local socks = redis.call('HKEYS', K.agent_sockets(aid))
  for _, inst in ipairs(socks) do
    local due = redis.call('ZSCORE', K.instances(), inst)
    if due and due + 0 > now then return true end
  end
  return false
end

-- An agent left with no socket on a live instance goes offline (unless it is already);
-- its id is added to the list gone when it does.
local function leave_if_absent(aid, now, gone)
  if has_live_socket(aid, now) then return end
  local ag = load_agent(aid)
  if ag and ag.st ~= 'offline' then
    go_offline(ag, now)
    gone[#gone + 1] = aid
  end
end
