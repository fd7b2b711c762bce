//! The Lua scripts of presence. Each runs atomically in Redis, so every
//! instance sees one order of joins, leaves and offline decisions.
//!
//! Keys (all under `REDIS_KEY_PREFIX`): `presence:<user>` the instances'
//! leases (sorted set, score = expiry ms), `online:<user>` what REST reads,
//! `presence:state:<user>` a hash with `on` (what contacts were last told)
//! and `v` (the version of that announcement), and `presence:due` one
//! sorted set of users to re-check (score = when, ms). On a Redis Cluster
//! the user's keys carry the tag of its partition (`presence:{p3}:<user>`,
//! ...) and the due set is that partition's `presence:due:{p3}`: a script
//! touches one slot.

/// Shared helper: the next version of a user's presence, at least the
/// current time in ms, so it keeps growing even if the hash was lost.
macro_rules! bump {
    () => {
        r"
local function bump(key, now)
  local v = tonumber(redis.call('HGET', key, 'v') or '0')
  if now > v then v = now else v = v + 1 end
  redis.call('HSET', key, 'v', v)
  return v
end
"
    };
}

/// Adds/renews this instance's lease and schedules a re-check for when it
/// would run out (so a crashed instance's users still go offline).
/// KEYS: leases, online, state, due. ARGV: instance, now, lease ms,
/// grace ms, user. Returns the version to announce `user.online` with,
/// or 0 when contacts already know the user is online.
pub const JOIN: &str = concat!(
    bump!(),
    r"
local now = tonumber(ARGV[2])
local lease = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
redis.call('PEXPIRE', KEYS[1], lease)
redis.call('SET', KEYS[2], 'true', 'PX', lease)
redis.call('ZADD', KEYS[4], now + lease + tonumber(ARGV[4]), ARGV[5])
local announce = 0
if redis.call('HGET', KEYS[3], 'on') ~= '1' then
  redis.call('HSET', KEYS[3], 'on', '1')
  announce = bump(KEYS[3], now)
end
redis.call('PEXPIRE', KEYS[3], 604800000)
return announce
"
);

/// Drops this instance's lease. When none is left anywhere, the user is
/// due for an offline check after the grace period; `online` stays until
/// then, so REST and events agree. KEYS: leases, due. ARGV: instance,
/// now, grace ms, user. Returns the number of live leases left.
pub const LEAVE: &str = r"
local now = tonumber(ARGV[2])
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local left = redis.call('ZCARD', KEYS[1])
if left == 0 then
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[4])
end
return left
";

/// Decides a due user: still connected somewhere, re-check when the newest
/// lease would run out; else, if contacts were told `online`, flip to
/// offline. Exactly one caller (of all instances' sweepers) wins a flip.
/// KEYS: leases, online, state, due. ARGV: user, now, grace ms.
/// Returns {version, last seen ms}; version 0 = nothing to announce.
pub const SETTLE: &str = concat!(
    bump!(),
    r"
local now = tonumber(ARGV[2])
local grace = tonumber(ARGV[3])
local due = redis.call('ZSCORE', KEYS[4], ARGV[1])
if not due or tonumber(due) > now then return {0, 0} end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local newest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if #newest > 0 then
  redis.call('ZADD', KEYS[4], tonumber(newest[2]) + grace, ARGV[1])
  return {0, 0}
end
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('DEL', KEYS[2])
if redis.call('HGET', KEYS[3], 'on') ~= '1' then return {0, 0} end
redis.call('HSET', KEYS[3], 'on', '0')
redis.call('PEXPIRE', KEYS[3], 604800000)
return {bump(KEYS[3], now), math.floor(tonumber(due) - grace)}
"
);

/// Takes a slot in `wsconns:<user>` (member = one socket, score = lease
/// expiry in ms) unless the user already holds `ARGV[4]` live ones; expired
/// members (a crashed instance's sockets) are dropped first. 1 = taken.
pub const RESERVE_SOCKET: &str = r"
local now = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
";
