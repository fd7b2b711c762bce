local epoch = redis.call('HGET', KEYS[1], 'e')
if not epoch then return {} end
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
if #last == 0 then return {} end
return {epoch, last[1][1]}
