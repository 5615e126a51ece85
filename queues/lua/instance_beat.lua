-- instance_beat: the instance is alive (live until now + timeout: instance_seen, which pushes
-- its sweep timer forward). With `sockets`, the instance's record of sockets is replaced by
-- it (after the instance was swept, or a socket_opened / socket_closed that may not have
-- reached Redis): agents it lists get their counts, the others it had none; those left with no
-- socket on any live instance go offline, in id order.
-- KEYS[1]  tenant key prefix "sb:{tenant}:"
-- ARGV[1]  now (ms)
-- ARGV[2]  instance id
-- ARGV[3]  instance timeout (ms)
-- ARGV[4]  '' (liveness only), or JSON {agent id: sockets held (>= 1)}
-- Returns [code, payload, events]:
--   OK  {known = bool (the instance had a record before), offline = [agents set offline]}
local now, inst, timeout, sync = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]), ARGV[4]
local known = instance_seen(inst, now, timeout)
local gone = {}
if sync ~= '' then
  local want = cjson.decode(sync)
  local listed = {}
  for aid, _ in pairs(want) do listed[#listed + 1] = aid end
  table.sort(listed, str_lt)
  for _, aid in ipairs(listed) do
    -- (an agent that does not exist is not recorded)
    if redis.call('HEXISTS', K.agent(aid), 'st') == 1 then set_sockets(aid, inst, want[aid]) end
  end
  local dropped = {}
  for _, aid in ipairs(redis.call('ZRANGE', K.instance_agents(inst), '0', '-1')) do
    if not want[aid] then dropped[#dropped + 1] = aid end
  end
  for _, aid in ipairs(dropped) do
    set_sockets(aid, inst, 0)
    leave_if_absent(aid, now, gone)
  end
end
if #gone == 0 then
  return finish(E.OK, '{"known":' .. tostring(known) .. ',"offline":[]}')
end
return finish(E.OK, {known = known, offline = gone})
