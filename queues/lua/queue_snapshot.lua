-- queue_snapshot (read only): depth, oldest wait, staffing and today's counters per queue.
-- KEYS[1]  tenant key prefix "sb:{tenant}:"
-- ARGV[1]  now (ms)
-- ARGV[2]  queue names (JSON list)
-- ARGV[3]  channels (JSON list of capacity channels)
-- Returns [code, payload, events]:
--   OK  {queues = [{name, waiting, held (scheduled callbacks out of line until their time),
--                   oldest (enqueued ms of the oldest waiting, -1 if none), staffed, available,
--                   free (the most agents with free capacity on one channel),
--                   places (the agents staffed, each counted for its largest capacity on one
--                   channel),
--                   stats = {counter: n}}]}
local now = tonumber(ARGV[1])
local channels = cjson.decode(ARGV[3])
local out = {}
for _, q in ipairs(cjson.decode(ARGV[2])) do
  local waiting, free = 0, 0
  for _, ch in ipairs(channels) do
    waiting = waiting + redis.call('ZCARD', K.queue_waiting(q, ch))
    free = math.max(free, redis.call('ZCARD', K.queue_free(q, ch)))
  end
  local first = redis.call('ZRANGE', K.queue_age(q), 0, 0, 'WITHSCORES')
  local stats = {}
  local flat = redis.call('HGETALL', stats_key(q, now))
  for i = 1, #flat, 2 do stats[flat[i]] = tonumber(flat[i + 1]) end
  -- (the fields' sum: staffed * 2^32 + available, see staffing; places from each field's
  -- capacity, see staff_field)
  local n, places = 0, 0
  local f = redis.call('HGETALL', K.queue_staffing(q))
  for i = 2, #f, 2 do
    n = n + f[i]
    local most = 0
    for cap in string.gmatch(f[i - 1], ':(%d+)') do
      if cap + 0 > most then most = cap + 0 end
    end
    places = places + most * math.floor(f[i] / 4294967296)
  end
  out[#out + 1] = {name = q, waiting = waiting, held = redis.call('ZCARD', K.queue_held(q)),
                   oldest = tonumber(first[2] or -1),
                   staffed = math.floor(n / 4294967296), available = n % 4294967296,
                   free = free, places = places, stats = stats}
end
return finish(E.OK, {queues = out})
