-- claim_timers: lease the due timers to the calling instance. Each claimed timer is pushed
-- back by the lease, so if the instance dies before handling it, another one will; the timer
-- scripts are idempotent and remove their timer when they run.
-- KEYS[1]  tenant key prefix "sb:{tenant}:"
-- ARGV[1]  now (ms)
-- ARGV[2]  most timers to claim
-- ARGV[3]  lease (ms)
-- Returns [code, payload, events]:
--   OK  {timers = [member], next = due ms of the earliest timer left (-1 for none)}
local now, limit, lease = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local due = redis.call('ZRANGEBYSCORE', K.timers(), '-inf', now, 'LIMIT', 0, limit)
for _, member in ipairs(due) do
  redis.call('ZADD', K.timers(), 'XX', now + lease, member)
end
local first = redis.call('ZRANGE', K.timers(), 0, 0, 'WITHSCORES')
local next_due = -1
if first[2] then next_due = tonumber(first[2]) end
return finish(E.OK, {timers = due, next = next_due})
