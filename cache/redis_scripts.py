"""The Lua scripts of ``cache.redis_tier`` (run atomically by Redis; see its key layout).

Each script gets the key prefix as ``ARGV[1]`` and computes the keys it touches from it, which
is why the tier needs a standalone Redis (or a primary), not Redis Cluster.
"""

from __future__ import annotations

LUA_DROP = """
local function drop(p, k)
  local size = redis.call('HGET', p .. 'i:size', k)
  if size then
    redis.call('DECRBY', p .. 'i:bytes', size)
    redis.call('HDEL', p .. 'i:size', k)
  end
  redis.call('ZREM', p .. 'i:exp', k)
  local tags = redis.call('HGET', p .. 'i:tags', k)
  if tags then
    for _, t in ipairs(cjson.decode(tags)) do redis.call('SREM', p .. 't:' .. t, k) end
    redis.call('HDEL', p .. 'i:tags', k)
  end
  return redis.call('DEL', k)
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""

# ARGV: prefix, key, value, ttl_ms, size, tags (JSON array), max_bytes, fill_start_ms (0: no
# fence), fence key suffix (the cache key, or ''). Returns evicted count, or -1 when a purge
# since fill_start_ms forbids storing.
LUA_PUT = (
    LUA_DROP
    + """
local p, k, v = ARGV[1], ARGV[2], ARGV[3]
local ttl, size, tags = tonumber(ARGV[4]), tonumber(ARGV[5]), cjson.decode(ARGV[6])
local max_bytes, since, ckey = tonumber(ARGV[7]), tonumber(ARGV[8]), ARGV[9]
if since > 0 then
  local function purged(m) local at = redis.call('GET', m); return at and tonumber(at) >= since end
  if purged(p .. 'pa') or (ckey ~= '' and purged(p .. 'pk:' .. ckey)) then return -1 end
  for _, t in ipairs(tags) do if purged(p .. 'p:' .. t) then return -1 end end
end
local now = now_ms()
for _, old in ipairs(redis.call('ZRANGEBYSCORE', p .. 'i:exp', '-inf', now, 'LIMIT', 0, 64)) do
  drop(p, old)
end
drop(p, k)
redis.call('SET', k, v, 'PX', ttl)
redis.call('HSET', p .. 'i:size', k, size)
redis.call('ZADD', p .. 'i:exp', now + ttl, k)
redis.call('INCRBY', p .. 'i:bytes', size)
if #tags > 0 then
  redis.call('HSET', p .. 'i:tags', k, ARGV[6])
  for _, t in ipairs(tags) do
    local ts = p .. 't:' .. t
    redis.call('SADD', ts, k)
    if redis.call('PTTL', ts) < ttl then redis.call('PEXPIRE', ts, ttl) end
  end
end
local evicted = 0
while tonumber(redis.call('GET', p .. 'i:bytes') or '0') > max_bytes do
  local victim = redis.call('ZRANGE', p .. 'i:exp', 0, 0)[1]
  if not victim then break end
  drop(p, victim)
  evicted = evicted + 1
end
return evicted
"""
)

# ARGV: prefix, mode ('tags' | 'keys' | 'all'), marker_ttl_ms, message ('' = none), names...
LUA_PURGE = (
    LUA_DROP
    + """
local p, mode, marker_ttl, msg = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local now, dropped = now_ms(), 0
if mode == 'all' then
  for _, k in ipairs(redis.call('ZRANGE', p .. 'i:exp', 0, -1)) do
    if string.sub(k, 1, #p + 2) == p .. 'r:' then dropped = dropped + drop(p, k) end
  end
  redis.call('SET', p .. 'pa', now, 'PX', marker_ttl)
else
  for i = 5, #ARGV do
    local name = ARGV[i]
    if mode == 'tags' then
      for _, k in ipairs(redis.call('SMEMBERS', p .. 't:' .. name)) do
        dropped = dropped + drop(p, k)
      end
      redis.call('DEL', p .. 't:' .. name)
      redis.call('SET', p .. 'p:' .. name, now, 'PX', marker_ttl)
    else
      dropped = dropped + drop(p, p .. 'r:' .. name)
      redis.call('SET', p .. 'pk:' .. name, now, 'PX', marker_ttl)
    end
  end
end
if msg ~= '' then redis.call('PUBLISH', p .. 'events', msg) end
return dropped
"""
)

LUA_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
