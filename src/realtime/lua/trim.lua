-- Keep the larger of "written within keep_ms" and "the last keep_n": drop
-- from the head only entries that are both older and beyond the count.
-- KEYS: streams; ARGV: keep_ms, keep_n, most entries dropped per stream.
--
-- Entries are numbered densely from the head and their write times rise
-- with their numbers, so the last one to drop is found by a binary search
-- of single-entry reads (1 + log2(most) of them). Reading the head's
-- `most` entries in one XRANGE copied every body into Lua: at steady state
-- about `most / 2` of them, 534 bytes each, per due stream.
local keep_ms, keep_n, most = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local cutoff = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - keep_ms

-- The first entry with an id in [first, last]: its id and write ms.
local function entry(stream, first, last)
  local e = redis.call('XRANGE', stream, first, last, 'COUNT', 1)[1]
  if not e then return nil, nil end
  for j = 1, #e[2], 2 do
    if e[2][j] == 't' then return e[1], tonumber(e[2][j + 1]) end
  end
  return e[1], 0
end

for _, stream in ipairs(KEYS) do
  local excess = redis.call('XLEN', stream) - keep_n
  if excess > 0 then
    local drop, written = entry(stream, '-', '+')
    if drop and written < cutoff then
      local ms, base = string.match(drop, '^(%d+)%-(%d+)$')
      -- Numbers are below 2^53 (a stream starts at its creation ms × 1000),
      -- so a Lua double holds them exactly and %.0f prints them whole.
      base = tonumber(base)
      local function id(i) return ms .. '-' .. string.format('%.0f', base + i) end
      -- Invariant: entry `lo` (from the head) is to be dropped, nothing
      -- after `hi` may be. Reading up to id(hi) keeps the count bounded
      -- even if a number were missing.
      local lo, hi = 0, math.min(excess, most) - 1
      while lo < hi do
        local mid = math.floor((lo + hi + 1) / 2)
        local at, w = entry(stream, id(mid), id(hi))
        if at and w < cutoff then
          lo, drop = mid, at
        else
          hi = mid - 1
        end
      end
      -- MINID keeps ids >= the one given, so the last dropped one goes by XDEL.
      redis.call('XTRIM', stream, 'MINID', drop)
      redis.call('XDEL', stream, drop)
    end
  end
end
return 0
