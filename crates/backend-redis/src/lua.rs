//! The server-side scripts. Each touches the keys of one item (or of items in one cluster slot),
//! whose names it derives the same way as [`crate::keys`]: record `{data}:s`, chunks
//! `{data}:c:<write id>:<n>`. All of an item's keys share a hash slot, so the scripts are legal
//! on a cluster.

use redis::Cmd;

/// Records a read in the item's record, if the item exists (`stored` access tracking).
///
/// `KEYS`: data key, record. `ARGV`: now in milliseconds.
pub(crate) const TOUCH: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then
  if redis.call('HSET', KEYS[2], 'a', ARGV[1]) == 1 then
    local ttl = redis.call('PTTL', KEYS[1])
    if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
  end
end
return 0
";

/// Writes the record of an item that lost it, if the item exists, with the item's expiry.
///
/// `KEYS`: data key, record. `ARGV`: size, last access in milliseconds.
pub(crate) const REPAIR: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], 's', ARGV[1], 'a', ARGV[2])
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) else redis.call('PERSIST', KEYS[2]) end
return 1
";

/// Deletes items: data key, record and chunks. Returns how many items existed.
///
/// `KEYS`: data keys.
pub(crate) const DELETE: &str = r"
local deleted = 0
for _, data in ipairs(KEYS) do
  local kind = redis.call('TYPE', data)['ok']
  if kind == 'hash' then
    local m = redis.call('HMGET', data, 'w', 'n')
    if m[1] then
      local head = '{' .. data .. '}:c:' .. m[1] .. ':'
      for i = 0, (tonumber(m[2]) or 0) - 1 do redis.call('UNLINK', head .. i) end
    end
  end
  if kind ~= 'none' then deleted = deleted + 1 end
  redis.call('UNLINK', data, '{' .. data .. '}:s')
end
return deleted
";

/// Publishes a chunked item whose chunks are written: checks that every chunk is there, gives
/// them the item's expiry (or none), retires the chunks of the item it replaces (they expire
/// after the grace period, so that readers still reading them finish), and writes the manifest
/// and the record. Returns 1 when published, 0 when an item exists and `only if absent` was
/// asked (the new chunks are deleted), -1 when a chunk is missing (expired before the
/// publication).
///
/// `KEYS`: data key, record. `ARGV`: write id, chunk count, size, chunk size, expiry in ms (0 for
/// none), now in ms, only if absent (`1`/`0`), grace in ms.
pub(crate) const PUBLISH: &str = r"
local data, record = KEYS[1], KEYS[2]
local id, n, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[5])
local head = '{' .. data .. '}:c:'
for i = 0, n - 1 do
  if redis.call('EXISTS', head .. id .. ':' .. i) == 0 then return -1 end
end
local kind = redis.call('TYPE', data)['ok']
if ARGV[7] == '1' and kind ~= 'none' then
  for i = 0, n - 1 do redis.call('UNLINK', head .. id .. ':' .. i) end
  return 0
end
if kind == 'hash' then
  local old = redis.call('HMGET', data, 'w', 'n')
  if old[1] and old[1] ~= id then
    for i = 0, (tonumber(old[2]) or 0) - 1 do
      redis.call('PEXPIRE', head .. old[1] .. ':' .. i, ARGV[8])
    end
  end
end
for i = 0, n - 1 do
  local chunk = head .. id .. ':' .. i
  if ttl > 0 then redis.call('PEXPIRE', chunk, ttl) else redis.call('PERSIST', chunk) end
end
redis.call('UNLINK', data, record)
redis.call('HSET', data, 'w', id, 'n', n, 's', ARGV[3], 'c', ARGV[4])
redis.call('HSET', record, 's', ARGV[3], 'a', ARGV[6])
if ttl > 0 then
  redis.call('PEXPIRE', data, ttl)
  redis.call('PEXPIRE', record, ttl)
end
return 1
";

/// Deletes the chunks of a write that was never published, unless the item's manifest names
/// the write (it is the item's current value). Returns how many chunks were deleted.
///
/// `KEYS`: data key, then the chunks. `ARGV`: write id.
pub(crate) const SWEEP: &str = r"
if redis.call('TYPE', KEYS[1])['ok'] == 'hash' and redis.call('HGET', KEYS[1], 'w') == ARGV[1] then
  return 0
end
local deleted = 0
for i = 2, #KEYS do deleted = deleted + redis.call('UNLINK', KEYS[i]) end
return deleted
";

/// An `EVAL` of a script. The script travels with every call (they are small), so that a
/// script cache flushed by a restart or a failover never costs a round trip.
pub(crate) fn eval<K: redis::ToRedisArgs>(script: &str, keys: &[K]) -> Cmd {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(script).arg(keys.len()).arg(keys);
    cmd
}
