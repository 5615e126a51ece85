-- accept_reservation: the agent takes the offered contact; it becomes assigned and joins the
-- contacts the agent holds (its field 'cs'). Accepting again, while the contact is still
-- assigned to the agent (a desk whose reply was lost, or came too late, retries), answers as the
-- first accept did, from the recorded answer time, and changes nothing.
-- KEYS[1]  tenant key prefix "sb:{tenant}:"
-- ARGV[1]  now (ms)
-- ARGV[2]  reservation id
-- ARGV[3]  acting agent id ('' when an admin acts for the reserved agent)
-- Returns [code, payload, events]:
--   OK                       {contact = contact_out, wait = ms waited, within = bool,
--                             replay = bool (an accept repeated: no events, nothing counted)}
--   RESERVATION_NOT_FOUND | NOT_YOUR_RESERVATION
--   RESERVATION_NOT_PENDING  rejected, rescinded or timed out; or accepted, and its contact
--                            since completed (wrapping or ended)
--   RESERVATION_EXPIRED      the lease ran out; its timeout is about to put the contact back
local now, rid, aid = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local r = redis.call('HMGET', K.reservation(rid), 'c', 'a', 'st', 'x')
if not r[1] then return finish(E.RESERVATION_NOT_FOUND) end
if aid ~= '' and r[2] ~= aid then return finish(E.NOT_YOUR_RESERVATION) end
if r[3] ~= 'pending' then
  if r[3] == 'accepted' then
    local f = redis.call('HMGET', K.contact(r[1]), 'st', 'agent', 'res', 'ans', 'enq', 'slt')
    if f[1] == 'assigned' and f[2] == r[2] and f[3] == rid then
      local wait = f[4] - f[5]
      return finish(E.OK, '{"contact":' .. contact_out(r[1]) .. ',"wait":' ..
                           fmt('%d', wait) .. ',"within":' .. tostring(wait <= f[6] + 0) ..
                           ',"replay":true}')
    end
  end
  return finish(E.RESERVATION_NOT_PENDING)
end
if now >= tonumber(r[4]) then return finish(E.RESERVATION_EXPIRED) end

local c = load_contact(r[1])
redis.call('HSET', K.reservation(rid), 'st', 'accepted')
redis.call('EXPIRE', K.reservation(rid), ENDED_KEEP_S)
local a = redis.call('HMGET', K.agent(r[2]), 'of', 'cs')
local cs = '"' .. c.id .. '"'
if a[2] and a[2] ~= '' then cs = a[2] .. ',' .. cs end
redis.call('HSET', K.agent(r[2]), 'of', drop_offer(a[1] or '', rid), 'cs', cs)
redis.call('ZREM', K.timers(), 'o|' .. rid, step_timer(c))
forget_declines(c)
redis.call('HSET', K.contact(c.id), 'st', 'assigned', 'ans', now, 'decl', '[]')
local wait = now - c.enq
local within = wait <= c.slt
count(c.queue, now, 'answered')
count(c.queue, now, 'wait_ms', wait)
if within then count(c.queue, now, 'answered_sl') end
emit({t = 'assigned', a = r[2], r = rid, c = c.id})
return finish(E.OK, '{"contact":' .. contact_out(c.id) .. ',"wait":' .. fmt('%d', wait) ..
                     ',"within":' .. tostring(within) .. ',"replay":false}')
