#!lua name=aigw
-- The gateway's fleet buckets (fleet mode: README, "Fleet mode"). Load once:
--   redis-cli -a "$REDIS_PASSWORD" FUNCTION LOAD REPLACE "$(cat deploy/redis/aigw.lua)"
--
-- A bucket is a hash {u = level, t = when it was last brought up to date (ms, the server's
-- clock)}, in the filters' units: for request and token buckets one token is 60,000 units and R
-- tokens per minute refill exactly R units per millisecond; for budgets one unit is one pico-USD
-- and nothing refills (each period has a key of its own). A missing bucket is full. Levels are
-- Lua numbers: exact integers up to 2^53 (a budget of USD 9,007 per period; beyond, within one
-- part in 10^16).
--
-- FCALL aigw_take N key1..keyN  rate1 cap1 need1 want1 ttl1 ... rateN capN needN wantN ttlN
--   rate in units per ms, cap (the burst, or the budget) in units, need and want in units, ttl
--   in ms (0: a refilling bucket expires once full again; a budget, when its period is over).
--   Takes from every bucket or from none. For each bucket, `need` must be there (the call
--   waiting for it), and up to `want` is taken (the replica's lease; want >= need).
--   Returns {1, granted1, ..., grantedN, left1, ..., leftN} (what each bucket holds after, at
--   most 2^53), or
--   {0, i, ms, level} when bucket i lacks its need: it
--   will have refilled enough in ms (-1: never, in this period or at all), and holds `level`.
-- FCALL aigw_give N key1..keyN  rate1 cap1 units1 ttl1 ... : gives unused lease back (capped at
--   the cap). Returns {1}.

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function level(key, rate, cap, now)
  local v = redis.call('HMGET', key, 'u', 't')
  local u, t = tonumber(v[1]), tonumber(v[2])
  if u == nil or t == nil then
    return cap
  end
  if rate > 0 and now > t then
    u = math.min(cap, u + (now - t) * rate)
  end
  return u
end

local function store(key, u, rate, cap, ttl, now)
  redis.call('HSET', key, 'u', u, 't', now)
  if ttl > 0 then
    redis.call('PEXPIRE', key, ttl)
  elseif rate > 0 then
    -- Full again after this long: gone then (a missing bucket is full).
    redis.call('PEXPIRE', key, math.max(1000, math.ceil((cap - u) / rate) + 1000))
  end
end

local function check(keys, args, width)
  if #args ~= #keys * width then
    return redis.error_reply('ERR aigw: expected ' .. width .. ' arguments per key')
  end
  return nil
end

local function take(keys, args)
  local bad = check(keys, args, 5)
  if bad then return bad end
  local now = now_ms()
  local levels = {}
  for i, key in ipairs(keys) do
    local rate, cap, need = tonumber(args[5 * i - 4]), tonumber(args[5 * i - 3]), tonumber(args[5 * i - 2])
    local u = level(key, rate, cap, now)
    if u < need then
      if need > cap or rate <= 0 then
        return {0, i, -1, math.floor(u)}
      end
      return {0, i, math.ceil((need - u) / rate), math.floor(u)}
    end
    levels[i] = u
  end
  local out = {1}
  for i, key in ipairs(keys) do
    local rate, cap = tonumber(args[5 * i - 4]), tonumber(args[5 * i - 3])
    local want = math.max(tonumber(args[5 * i - 1]), tonumber(args[5 * i - 2]))
    local g = math.min(levels[i], want)
    if g < 0 then g = 0 end
    store(key, levels[i] - g, rate, cap, tonumber(args[5 * i]), now)
    out[i + 1] = g
    -- (What is left, at most 2^53: a Lua number is exact to there, and a Redis integer reply
    -- overflows past 2^63.)
    out[#keys + i + 1] = math.min(math.floor(levels[i] - g), 9007199254740992)
  end
  return out
end

local function give(keys, args)
  local bad = check(keys, args, 4)
  if bad then return bad end
  local now = now_ms()
  for i, key in ipairs(keys) do
    local rate, cap = tonumber(args[4 * i - 3]), tonumber(args[4 * i - 2])
    local u = level(key, rate, cap, now)
    store(key, math.min(cap, u + math.max(0, tonumber(args[4 * i - 1]))), rate, cap, tonumber(args[4 * i]), now)
  end
  return {1}
end

redis.register_function('aigw_take', take)
redis.register_function('aigw_give', give)

-- The fleet's shared cache (README, "The cache"): exact entries, base64 text, each with its
-- lifetime. FCALL aigw_cache_put 1 key ttl_ms value -> {1}; FCALL aigw_cache_get 1 key -> the
-- value, or nil.
redis.register_function('aigw_cache_put', function(keys, args)
  redis.call('SET', keys[1], args[2], 'PX', math.max(1, tonumber(args[1])))
  return {1}
end)
redis.register_function('aigw_cache_get', function(keys, args)
  return redis.call('GET', keys[1])
end)

-- Bad-credential marks (a provider's 401/403), shared by every replica: one hash, field
-- "provider<TAB>credential name", value the time (ms, the replicas' clock) until which the
-- credential is skipped. FCALL aigw_marks_put 1 key field1 until1 ... keeps the later time of
-- each and returns {1}; FCALL aigw_marks_get 1 key now_ms drops the marks that ended before
-- `now_ms` and returns the others, {field1, until1, ...}.
redis.register_function('aigw_marks_put', function(keys, args)
  if #keys ~= 1 or #args % 2 ~= 0 then
    return redis.error_reply('ERR aigw: expected one key and field/until pairs')
  end
  for i = 1, #args, 2 do
    local cur = tonumber(redis.call('HGET', keys[1], args[i]) or '0') or 0
    if tonumber(args[i + 1]) > cur then
      redis.call('HSET', keys[1], args[i], args[i + 1])
    end
  end
  return {1}
end)
redis.register_function('aigw_marks_get', function(keys, args)
  if #keys ~= 1 or #args ~= 1 then
    return redis.error_reply('ERR aigw: expected one key and the time')
  end
  local now = tonumber(args[1])
  local all = redis.call('HGETALL', keys[1])
  local out = {}
  for i = 1, #all, 2 do
    if tonumber(all[i + 1]) > now then
      out[#out + 1] = all[i]
      out[#out + 1] = all[i + 1]
    else
      redis.call('HDEL', keys[1], all[i])
    end
  end
  return out
end)

-- Calls-in-flight slots (fleet mode): each key is a hash of replica -> "slots:expires_ms", the
-- slots that replica holds, renewed by its ticker. FCALL aigw_slots N key1..keyN replica ttl_ms
-- mode want1 limit1 ... wantN limitN sets this replica's holding to `want` (mode `grow`: never
-- less than it holds already, as calls ask; mode `set`: as its ticker renews it) or what the
-- other live replicas leave of `limit`, whichever is less, drops holdings that expired (a
-- replica that died), and returns {1, held1, ..., heldN}.
redis.register_function('aigw_slots', function(keys, args)
  if #args ~= 3 + 2 * #keys then
    return redis.error_reply('ERR aigw: expected the replica, a ttl, a mode and 2 arguments per key')
  end
  local replica, ttl, grow = args[1], tonumber(args[2]), args[3] == 'grow'
  local now = now_ms()
  local out = {1}
  for i, key in ipairs(keys) do
    local want, limit = tonumber(args[2 + 2 * i]), tonumber(args[3 + 2 * i])
    local others, mine = 0, 0
    local all = redis.call('HGETALL', key)
    for j = 1, #all, 2 do
      local f, v = all[j], all[j + 1]
      local n, exp = string.match(v, '^(%d+):(%d+)$')
      if not n or tonumber(exp) <= now then
        redis.call('HDEL', key, f)
      elseif f == replica then
        mine = tonumber(n)
      else
        others = others + tonumber(n)
      end
    end
    if grow then
      want = math.max(want, mine)
    end
    local held = math.max(0, math.min(want, limit - others))
    if held > 0 then
      redis.call('HSET', key, replica, held .. ':' .. (now + ttl))
      redis.call('PEXPIRE', key, 2 * ttl)
    else
      redis.call('HDEL', key, replica)
    end
    out[i + 1] = held
  end
  return out
end)
