-- Per user 4 commands in the common case (HINCRBY, HGET, XADD, PTTL): a
-- 10,000-member group makes 10,000 of these per message, and Redis runs
-- them one at a time, so every command per user counts.
local keep_ms, keep_n, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local nb = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- TTLs are refreshed once they have run down by this much (a PTTL read is
-- one command, refreshing both keys two): an idle store lives at least
-- ttl - slack after its last event.
local slack = math.floor(ttl / 16)
local out = {}
for i = 1, #KEYS / 2 do
  local meta, stream = KEYS[2 * i - 1], KEYS[2 * i]
  local body = ARGV[4 + tonumber(ARGV[4 + nb + 2 * i - 1])]
  local unread = ARGV[4 + nb + 2 * i]
  local n = redis.call('HINCRBY', meta, 'n', 1)
  local epoch = (n > 1) and redis.call('HGET', meta, 'e')
  local id = n .. '-' .. now
  -- NOMKSTREAM: a lost stream (evicted, expired apart from its meta) is
  -- noticed here instead of by an EXISTS per event.
  if not (epoch and redis.call('XADD', stream, 'NOMKSTREAM', id, 'd', body, 'u', unread)) then
    -- New user, or the stream was lost: a new epoch voids every old position.
    epoch = t[1] .. string.format('%06d%03d', tonumber(t[2]), i % 1000)
    n = 1
    id = '1-' .. now
    redis.call('DEL', stream)
    redis.call('HSET', meta, 'e', epoch, 'n', 1)
    redis.call('XADD', stream, id, 'd', body, 'u', unread)
    if ttl > 0 then
      redis.call('PEXPIRE', meta, ttl)
      redis.call('PEXPIRE', stream, ttl)
    end
  elseif ttl > 0 and redis.call('PTTL', meta) < ttl - slack then
    redis.call('PEXPIRE', meta, ttl)
    redis.call('PEXPIRE', stream, ttl)
  end
  -- Keep the larger of "younger than keep_ms" and "the last keep_n": drop
  -- from the head only entries that are both older and beyond the count.
  -- Checked every 8th event (the store holds at most 7 more than needed).
  if n % 8 == 0 then
    local excess = redis.call('XLEN', stream) - keep_n
    if excess > 0 then
      local cutoff, drop = now - keep_ms, nil
      for _, e in ipairs(redis.call('XRANGE', stream, '-', '+', 'COUNT', math.min(excess, 64))) do
        if tonumber(string.match(e[1], '%-(%d+)$')) >= cutoff then break end
        drop = e[1]
      end
      if drop then
        redis.call('XTRIM', stream, 'MINID', (tonumber(string.match(drop, '^(%d+)')) + 1) .. '-0')
      end
    end
  end
  out[2 * i - 1] = epoch
  out[2 * i] = id
end
return out
