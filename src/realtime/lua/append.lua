local keep_ms, keep_n, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local nb = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for i = 1, #KEYS / 2 do
  local meta, stream = KEYS[2 * i - 1], KEYS[2 * i]
  local body = ARGV[4 + tonumber(ARGV[4 + nb + 2 * i - 1])]
  local unread = ARGV[4 + nb + 2 * i]
  local epoch = redis.call('HGET', meta, 'e')
  if (not epoch) or redis.call('EXISTS', stream) == 0 then
    -- New user, or the stream was lost: a new epoch voids every old position.
    epoch = t[1] .. string.format('%06d%03d', tonumber(t[2]), i % 1000)
    redis.call('DEL', stream)
    redis.call('HSET', meta, 'e', epoch, 'n', 0)
  end
  local n = redis.call('HINCRBY', meta, 'n', 1)
  local id = n .. '-' .. now
  redis.call('XADD', stream, id, 'd', body, 'u', unread)
  -- Keep the larger of "younger than keep_ms" and "the last keep_n": drop
  -- from the head only entries that are both older and beyond the count.
  local excess = redis.call('XLEN', stream) - keep_n
  if excess > 0 then
    local cutoff, drop = now - keep_ms, nil
    for _, e in ipairs(redis.call('XRANGE', stream, '-', '+', 'COUNT', math.min(excess, 8))) do
      if tonumber(string.match(e[1], '%-(%d+)$')) >= cutoff then break end
      drop = e[1]
    end
    if drop then
      redis.call('XTRIM', stream, 'MINID', (tonumber(string.match(drop, '^(%d+)')) + 1) .. '-0')
    end
  end
  if ttl > 0 then
    redis.call('PEXPIRE', meta, ttl)
    redis.call('PEXPIRE', stream, ttl)
  end
  out[2 * i - 1] = epoch
  out[2 * i] = id
end
return out
