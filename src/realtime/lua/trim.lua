-- Keep the larger of "written within keep_ms" and "the last keep_n": drop
-- from the head only entries that are both older and beyond the count.
-- KEYS: streams; ARGV: keep_ms, keep_n, most entries dropped per stream.
local keep_ms, keep_n, most = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local cutoff = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - keep_ms
for _, stream in ipairs(KEYS) do
  local excess = redis.call('XLEN', stream) - keep_n
  if excess > 0 then
    local drop = nil
    for _, e in ipairs(redis.call('XRANGE', stream, '-', '+', 'COUNT', math.min(excess, most))) do
      local written = 0
      for j = 1, #e[2], 2 do
        if e[2][j] == 't' then written = tonumber(e[2][j + 1]) end
      end
      if written >= cutoff then break end
      drop = e[1]
    end
    if drop then
      -- MINID keeps ids >= the one given, so the last dropped one goes by
      -- XDEL (its number + 1 would pass through a Lua double).
      redis.call('XTRIM', stream, 'MINID', drop)
      redis.call('XDEL', stream, drop)
    end
  end
end
return 0
