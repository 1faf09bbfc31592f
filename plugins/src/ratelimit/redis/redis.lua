-- GCRA for one request against one or more buckets, all or nothing (ratelimit/redis/mod.rs).
--
-- KEYS[i]     the bucket of limit i (two limits may share a bucket: the second sees the
--             first's tentative update).
-- ARGV[2i-1]  limit i's emission interval T in nanoseconds (an integer >= 1)
-- ARGV[2i]    limit i's burst B (an integer >= 1); B * T < 2^53 (checked by the caller)
--
-- A bucket stores its theoretical arrival time (TAT) as the string "<us>.<nnn>": whole
-- microseconds since the Unix epoch, then the nanoseconds below them. Lua numbers are
-- doubles: microseconds since 1970 (~1.8e15) are exact, nanoseconds (~1.8e18) are not, so
-- the arithmetic works on nanoseconds relative to now, which stay small. The key expires
-- at its TAT: past it the bucket is full again and needs no state.
--
-- Reply: {admitted, then per limit: admitted_i, remaining, reset_ns, retry_after_ns}.
-- admitted_i says whether limit i had room; only when every limit has room is anything
-- written. When refused, each limit is reported as it stands (nothing was taken).

local time = redis.call('TIME')
local now_us = tonumber(time[1]) * 1000000 + tonumber(time[2])

-- Nanoseconds from now until the stored TAT (0 when absent, past, or not ours).
local function stored_tat(key)
  local v = redis.call('GET', key)
  if not v then
    return 0
  end
  local dot = string.find(v, '.', 1, true)
  if not dot then
    return 0
  end
  local us = tonumber(string.sub(v, 1, dot - 1))
  local ns = tonumber(string.sub(v, dot + 1))
  if not us or not ns then
    return 0
  end
  local rel = (us - now_us) * 1000 + ns
  if rel < 0 then
    return 0
  end
  return rel
end

local n = #KEYS
local before = {}   -- per key: stored TAT (relative ns), as read
local current = {}  -- per key: TAT after the earlier limits of this request
local news = {}     -- per limit: its TAT if this request is admitted
local fits = {}     -- per limit: whether it has room
local all = true
for i = 1, n do
  local key = KEYS[i]
  local interval = tonumber(ARGV[2 * i - 1])
  local burst = tonumber(ARGV[2 * i])
  if current[key] == nil then
    local tat = stored_tat(key)
    before[key] = tat
    current[key] = tat
  end
  local new_tat = current[key] + interval
  news[i] = new_tat
  if new_tat <= burst * interval then
    fits[i] = true
    current[key] = new_tat
  else
    fits[i] = false
    all = false
  end
end

local reply = {all and 1 or 0}
for i = 1, n do
  local key = KEYS[i]
  local interval = tonumber(ARGV[2 * i - 1])
  local capacity = tonumber(ARGV[2 * i]) * interval
  local after = before[key]
  if all then
    after = news[i]
  end
  local remaining = 0
  local retry_after = 0
  if fits[i] then
    remaining = math.floor((capacity - after) / interval)
    if remaining < 0 then
      remaining = 0
    end
  else
    retry_after = news[i] - capacity
  end
  reply[#reply + 1] = fits[i] and 1 or 0
  reply[#reply + 1] = remaining
  reply[#reply + 1] = after
  reply[#reply + 1] = retry_after
end

if all then
  -- The last limit on a key holds its final TAT; written once per key.
  local written = {}
  for i = n, 1, -1 do
    local key = KEYS[i]
    if not written[key] then
      written[key] = true
      local rel = news[i]
      -- rel = q * 1000 + r with 0 <= r < 1000, without trusting a rounded division.
      local q = math.floor(rel / 1000)
      local r = rel - q * 1000
      if r < 0 then
        q = q - 1
        r = r + 1000
      elseif r >= 1000 then
        q = q + 1
        r = r - 1000
      end
      local ttl_ms = math.ceil(rel / 1000000)
      redis.call('SET', key, string.format('%d.%03d', now_us + q, r), 'PX', ttl_ms)
    end
  end
end

return reply
