-- KEYS[1] stream. ARGV: exact number ('' = no check), its write ms, first
-- id, last id ('+' = the end), count. 'reset' when the stream is missing;
-- with an exact position, that entry must still be kept with the same
-- write ms, else 'reset' if the position is older than the stream (its
-- number is below the stream's first-ever one: numbers are dense, so that
-- is the last one minus the count ever added, plus one) or 'expired'.
if redis.call('EXISTS', KEYS[1]) == 0 then return {'reset'} end
if ARGV[1] ~= '' then
  local e = redis.call('XRANGE', KEYS[1], '1-' .. ARGV[1], '1-' .. ARGV[1])
  local same = false
  if #e == 1 then
    for j = 1, #e[1][2], 2 do
      if e[1][2][j] == 't' and e[1][2][j + 1] == ARGV[2] then same = true end
    end
  end
  if not same then
    local info = redis.call('XINFO', 'STREAM', KEYS[1])
    local last, added = 0, 0
    for j = 1, #info, 2 do
      if info[j] == 'last-generated-id' then last = tonumber(string.match(info[j + 1], '%-(%d+)$')) end
      if info[j] == 'entries-added' then added = info[j + 1] end
    end
    if tonumber(ARGV[1]) < last - added + 1 then return {'reset'} end
    return {'expired'}
  end
end
return {'ok', redis.call('XRANGE', KEYS[1], ARGV[3], ARGV[4], 'COUNT', ARGV[5])}
