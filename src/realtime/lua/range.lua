local epoch = redis.call('HGET', KEYS[1], 'e')
if ARGV[1] ~= '' and epoch ~= ARGV[1] then return {'reset'} end
if not epoch then return {'ok', '', {}} end
if ARGV[3] ~= '' and #redis.call('XRANGE', KEYS[2], ARGV[3], ARGV[3]) == 0 then return {'expired'} end
return {'ok', epoch, redis.call('XRANGE', KEYS[2], (tonumber(ARGV[2]) + 1) .. '-0', ARGV[4], 'COUNT', ARGV[5])}
