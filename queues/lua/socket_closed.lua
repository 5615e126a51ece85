-- socket_closed: an instance closed a socket of the agent and now holds n of them (the count is
-- set, not taken from; an instance without a record, swept, has only a count of 0 recorded:
-- its next beat sends them all). With none left there, an agent left with no socket on any live instance
-- goes offline as agent_offline does (pending offers rescinded, contacts back in line); one
-- with a socket on another live instance keeps its state.
-- KEYS[1]  tenant key prefix "sb:{tenant}:"
-- ARGV[1]  now (ms)
-- ARGV[2]  agent id
-- ARGV[3]  instance id
-- ARGV[4]  sockets of the agent the instance still holds (>= 0)
-- Returns [code, payload, events]:
--   OK  {known = bool (the instance had a record), offline = [the agent, if it went offline]}
--   AGENT_NOT_FOUND  (nothing changes)
local now, aid, inst, n = tonumber(ARGV[1]), ARGV[2], ARGV[3], tonumber(ARGV[4])
if redis.call('HEXISTS', K.agent(aid), 'st') == 0 then return finish(E.AGENT_NOT_FOUND) end
local known = redis.call('ZSCORE', K.instances(), inst) ~= false
if n < 0 then n = 0 end
-- (an unknown instance, swept while it lived on, sends every socket it holds with its next
-- beat: sockets recorded for it now would only be swept again, perhaps by a stale second fire
-- of its sweep before that beat, setting agents it serves offline)
if known or n == 0 then set_sockets(aid, inst, n) end
local gone = {}
if n == 0 then leave_if_absent(aid, now, gone) end
local out = '[]'
if #gone > 0 then out = '["' .. aid .. '"]' end
return finish(E.OK, '{"known":' .. tostring(known) .. ',"offline":' .. out .. '}')
