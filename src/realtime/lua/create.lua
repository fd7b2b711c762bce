-- First event of a user (or the first after their stream was lost). The
-- numbers of a new stream start at Redis TIME in ms × 1000, so they are
-- above every number an earlier stream of this user gave out (it would
-- have needed 1,000 events per ms): a connected socket sees a jump, reads
-- the gap, finds it missing and is asked to resume; it never mistakes new
-- events for old ones. EXISTS makes two creators agree.
-- KEYS[1] stream; ARGV: body, unread, write ms, ttl ms, the body's field
-- ('d' inline, 'r' the id of a shared body).
local id
if redis.call('EXISTS', KEYS[1]) == 1 then
  id = redis.call('XADD', KEYS[1], '1-*', ARGV[5], ARGV[1], 'u', ARGV[2], 't', ARGV[3])
else
  local t = redis.call('TIME')
  id = '1-' .. t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000)) .. '000'
  redis.call('XADD', KEYS[1], id, ARGV[5], ARGV[1], 'u', ARGV[2], 't', ARGV[3])
end
if tonumber(ARGV[4]) > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
end
return id
