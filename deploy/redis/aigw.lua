#!lua name=aigw
-- The gateway's fleet buckets (fleet mode: README, "Fleet mode"). Load once:
--   redis-cli -a "$REDIS_PASSWORD" FUNCTION LOAD REPLACE "$(cat deploy/redis/aigw.lua)"
--
-- A bucket is a hash {u = level in units, t = when it was last brought up to date (ms, the
-- server's clock)}. Units as in the filters: one token is 60,000 units, and R tokens per minute
-- refill exactly R units per millisecond. A missing bucket is full; a full bucket expires.
--
-- FCALL aigw_take N key1..keyN  rate1 burst1 need1 want1 ... rateN burstN needN wantN
--   (rate in tokens per minute, burst in tokens, need and want in units)
--   Takes from every bucket or from none. For each bucket, `need` must be there (the call
--   waiting for it), and up to `want` is taken (the replica's lease; want >= need).
--   Returns {1, granted1, ..., grantedN} in units, or {0, i, ms} when bucket i lacks its need:
--   it will have refilled enough in ms (-1: never, the need is above the burst).
-- FCALL aigw_give N key1..keyN  rate1 burst1 units1 ... : gives unused lease back (capped at the
--   burst). Returns {1}.

local UNITS = 60000

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function level(key, rate, burst, now)
  local cap = burst * UNITS
  local v = redis.call('HMGET', key, 'u', 't')
  local u, t = tonumber(v[1]), tonumber(v[2])
  if u == nil or t == nil then
    return cap
  end
  if now > t then
    u = math.min(cap, u + (now - t) * rate)
  end
  return u
end

local function store(key, u, rate, burst, now)
  local cap = burst * UNITS
  redis.call('HSET', key, 'u', u, 't', now)
  if rate > 0 then
    -- Full again after this long: gone then (a missing bucket is full).
    redis.call('PEXPIRE', key, math.max(1000, math.ceil((cap - u) / rate) + 1000))
  end
end

local function args_of(keys, args, width)
  if #args ~= #keys * width then
    return redis.error_reply('ERR aigw: expected ' .. width .. ' arguments per key')
  end
  return nil
end

local function take(keys, args)
  local bad = args_of(keys, args, 4)
  if bad then return bad end
  local now = now_ms()
  local levels = {}
  for i, key in ipairs(keys) do
    local rate, burst = tonumber(args[4 * i - 3]), tonumber(args[4 * i - 2])
    local need = tonumber(args[4 * i - 1])
    local u = level(key, rate, burst, now)
    if u < need then
      if need > burst * UNITS or rate <= 0 then
        return {0, i, -1}
      end
      return {0, i, math.ceil((need - u) / rate)}
    end
    levels[i] = u
  end
  local out = {1}
  for i, key in ipairs(keys) do
    local rate, burst = tonumber(args[4 * i - 3]), tonumber(args[4 * i - 2])
    local want = math.max(tonumber(args[4 * i]), tonumber(args[4 * i - 1]))
    local g = math.min(levels[i], want)
    if g < 0 then g = 0 end
    store(key, levels[i] - g, rate, burst, now)
    out[i + 1] = g
  end
  return out
end

local function give(keys, args)
  local bad = args_of(keys, args, 3)
  if bad then return bad end
  local now = now_ms()
  for i, key in ipairs(keys) do
    local rate, burst = tonumber(args[3 * i - 2]), tonumber(args[3 * i - 1])
    local u = level(key, rate, burst, now)
    store(key, math.min(burst * UNITS, u + math.max(0, tonumber(args[3 * i]))), rate, burst, now)
  end
  return {1}
end

redis.register_function('aigw_take', take)
redis.register_function('aigw_give', give)
