-- sweep_instance (timer "i|<instance>"): an instance not heard from within its timeout is
-- taken for dead. Its record goes at once (a beat after this finds it unknown and sends its
-- sockets again), then its sockets are dropped, at most SWEEP_BATCH agents per call in id
-- order (the timer is set again for now while some remain), and each agent left with no socket
-- on a live instance goes offline. An instance heard from since the timer was set is not
-- swept: its timer is set again for its new deadline.
-- KEYS[1]  tenant key prefix "sb:{tenant}:"
-- ARGV[1]  now (ms)
-- ARGV[2]  instance id
-- Returns [code, payload, events]:
--   OK  {fired = bool, offline = [agents set offline]}  (not fired: live, or already swept)
local SWEEP_BATCH = 100
local now, inst = tonumber(ARGV[1]), ARGV[2]
local member = 'i|' .. inst
redis.call('ZREM', K.timers(), member)
local due = redis.call('ZSCORE', K.instances(), inst)
if due and due + 0 > now then
  set_timer(due, member)
  return finish(E.OK, {fired = false})
end
if due then redis.call('ZREM', K.instances(), inst) end
local agents = redis.call('ZRANGE', K.instance_agents(inst), '0', fmt('%d', SWEEP_BATCH - 1))
if #agents == 0 then return finish(E.OK, {fired = due ~= false}) end
local gone = {}
for _, aid in ipairs(agents) do
  set_sockets(aid, inst, 0)
  leave_if_absent(aid, now, gone)
end
if redis.call('EXISTS', K.instance_agents(inst)) == 1 then set_timer(fmt('%d', now), member) end
if #gone == 0 then return finish(E.OK, '{"fired":true,"offline":[]}') end
return finish(E.OK, {fired = true, offline = gone})
