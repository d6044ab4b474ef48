//! The server-side scripts. Each touches the keys of one item (or of items in one cluster slot),
//! whose names it derives the same way as [`crate::keys`]: record `{data}:s`, chunks
//! `{data}:c:<write id>:<n>`. All of an item's keys share a hash slot, so the scripts are legal
//! on a cluster.
//!
//! The store is untrusted: a script that follows a manifest to its chunks first checks the
//! manifest's write id, chunk count, size and chunk size (the bounds of [`crate::manifest`]),
//! and stops at the first chunk that does not exist, so that a forged manifest can neither name
//! keys of another item nor make a script send more commands than there are chunks (a well-formed
//! manifest may still name 1,048,576 chunks, and a batch holds 256 items); a script that reads
//! fields for the client returns them only when they are short.

use redis::Cmd;

/// The Lua function `each_chunk(data, f)`: calls `f` on the names of the chunks that the
/// manifest in `data` names, in order, when `data` holds a well-formed manifest (a write id of
/// at most 128 letters, digits and `-`; a size, a chunk size between 1 byte and 512 MiB and a
/// chunk count of at most 1048576 that match, written in decimal digits; see
/// [`crate::manifest`]), and on none otherwise. `f` is a command on the chunk that answers 0
/// when the key does not exist (`UNLINK`, `PEXPIRE`): the walk stops at the first chunk that
/// does not exist, so that it costs at most one command more than the chunks there are. (A
/// forged manifest of 1048576 chunks under each of a batch's 256 keys would otherwise make one
/// atomic script send 2^28 commands.) The chunks after a missing one, which only eviction or
/// another writer of the store leaves, are not followed: like the chunks of a dead writer they
/// go by expiry or eviction.
macro_rules! each_chunk {
    () => {
        r"
local function digits(v)
  if not v or string.len(v) > 20 or not string.find(v, '^%d+$') then return nil end
  return tonumber(v)
end
local function each_chunk(data, f)
  if redis.call('TYPE', data)['ok'] ~= 'hash' then return end
  local m = redis.call('HMGET', data, 'w', 'n', 's', 'c')
  local id, n, s, c = m[1], digits(m[2]), digits(m[3]), digits(m[4])
  if not id or string.len(id) > 128 or not string.find(id, '^[%w%-]+$') then return end
  if not n or not s or not c or c < 1 or c > 536870912 or n > 1048576 then return end
  if n * c < s or (n > 0 and (n - 1) * c >= s) then return end
  local head = '{' .. data .. '}:c:' .. id .. ':'
  for i = 0, n - 1 do
    if f(head .. i) == 0 then return end
  end
end
"
    };
}

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

/// The type and length of a data key, and (with a range) bytes of it when it holds a string,
/// read together. Returns `{type}` for anything but a string, else `{type, length}`, and with
/// a range `{type, length, bytes}`. (A script rather than a `MULTI`/`EXEC` transaction: one
/// command instead of five, and no transaction for the client to unwind when the server
/// refuses the `MULTI`.)
///
/// `KEYS`: data key. `ARGV`: nothing, or the first and last byte of the range.
pub(crate) const PROBE: &str = r"
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind ~= 'string' then return {kind} end
local len = redis.call('STRLEN', KEYS[1])
if #ARGV < 2 then return {kind, len} end
return {kind, len, redis.call('GETRANGE', KEYS[1], ARGV[1], ARGV[2])}
";

/// Reads the manifest of a chunked item, without transferring long fields. Returns 0 when the
/// key does not exist, 1 when it holds a string (a whole value), 2 when it holds anything else
/// or a field longer than the limit (a corrupted item), else the fields `w`, `n`, `s`, `c` (nil
/// when missing).
///
/// `KEYS`: data key. `ARGV`: the longest field accepted, in bytes.
pub(crate) const MANIFEST: &str = r"
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind == 'none' then return 0 end
if kind == 'string' then return 1 end
if kind ~= 'hash' then return 2 end
local m = redis.call('HMGET', KEYS[1], 'w', 'n', 's', 'c')
local limit = tonumber(ARGV[1])
for i = 1, 4 do
  if m[i] and string.len(m[i]) > limit then return 2 end
end
return m
";

/// What listing needs of items: for each data key four values, `kind` (0 gone, 1 a whole value,
/// 2 a manifest, 3 anything else), `size` (the length of a whole value, or the manifest's `s`
/// field as written, nil when longer than the limit), and the access probes. With `idletime`
/// tracking they are the idle times (seconds) of the record and of the data key (nil for a
/// missing key); `OBJECT IDLETIME` neither reads the keys nor resets their idle time. With
/// `stored` tracking they are the record's `a` field (nil when missing or longer than the
/// limit) and nil. Fails with the server's error when it keeps no idle times (an LFU policy).
///
/// `KEYS`: data keys. `ARGV`: `1` for stored tracking, `0` for idle times; the longest field
/// accepted, in bytes.
pub(crate) const LIST: &str = r"
local stored, limit = ARGV[1] == '1', tonumber(ARGV[2])
local function short(v)
  if v and string.len(v) <= limit then return v end
  return false
end
local function idle(key)
  local t = redis.pcall('OBJECT', 'IDLETIME', key)
  if type(t) == 'table' and t['err'] then error(t) end
  return t or false
end
local out = {}
for _, data in ipairs(KEYS) do
  local record = '{' .. data .. '}:s'
  local kind = redis.call('TYPE', data)['ok']
  local k, size = 3, false
  if kind == 'none' then
    k = 0
  elseif kind == 'string' then
    k, size = 1, redis.call('STRLEN', data)
  elseif kind == 'hash' then
    k, size = 2, short(redis.call('HGET', data, 's'))
  end
  local a, b = false, false
  if k ~= 0 then
    if stored then
      a = short(redis.call('HGET', record, 'a'))
    else
      a, b = idle(record), idle(data)
    end
  end
  out[#out + 1] = k
  out[#out + 1] = size
  out[#out + 1] = a
  out[#out + 1] = b
end
return out
";

/// Writes a whole (unchunked) value: lets the chunks of the chunked item it replaces expire
/// after the grace period (so that readers still reading them finish), then writes the value
/// and the record. Returns 1.
///
/// `KEYS`: data key, record. `ARGV`: value, size, expiry in ms (0 for none), now in ms, grace
/// in ms.
pub(crate) const WRITE: &str = concat!(
    each_chunk!(),
    r"
local data, record, ttl = KEYS[1], KEYS[2], tonumber(ARGV[3])
each_chunk(data, function(chunk) return redis.call('PEXPIRE', chunk, ARGV[5]) end)
if ttl > 0 then
  redis.call('SET', data, ARGV[1], 'PX', ttl)
else
  redis.call('SET', data, ARGV[1])
end
redis.call('HSET', record, 's', ARGV[2], 'a', ARGV[4])
if ttl > 0 then redis.call('PEXPIRE', record, ttl) else redis.call('PERSIST', record) end
return 1
"
);

/// Creates a whole (unchunked) value unless the data key exists: `SET NX` (with `PX` for an
/// expiry, so that a crashed holder's claim goes away), then the record, in one round trip.
/// Returns 1 when created, 0 when the key exists.
///
/// `KEYS`: data key, record. `ARGV`: value, size, expiry in ms (0 for none), now in ms.
pub(crate) const CREATE: &str = r"
local data, record, ttl = KEYS[1], KEYS[2], tonumber(ARGV[3])
local created
if ttl > 0 then
  created = redis.call('SET', data, ARGV[1], 'NX', 'PX', ttl)
else
  created = redis.call('SET', data, ARGV[1], 'NX')
end
if not created then return 0 end
redis.call('HSET', record, 's', ARGV[2], 'a', ARGV[4])
if ttl > 0 then redis.call('PEXPIRE', record, ttl) else redis.call('PERSIST', record) end
return 1
";

/// Deletes items: data key, record and chunks. Returns how many items existed.
///
/// `KEYS`: data keys.
pub(crate) const DELETE: &str = concat!(
    each_chunk!(),
    r"
local deleted = 0
for _, data in ipairs(KEYS) do
  each_chunk(data, function(chunk) return redis.call('UNLINK', chunk) end)
  deleted = deleted + redis.call('UNLINK', data)
  redis.call('UNLINK', '{' .. data .. '}:s')
end
return deleted
"
);

/// Publishes a chunked item whose chunks are written: checks that every chunk is there, gives
/// them the item's expiry (or none), retires the chunks of the item it replaces (they expire
/// after the grace period, so that readers still reading them finish), and writes the manifest
/// and the record. Returns 1 when published, 0 when an item exists and `only if absent` was
/// asked (the new chunks are deleted), -1 when a chunk is missing (expired before the
/// publication). Safe to run twice: a second run of an `only if absent` publication finds its
/// own manifest and returns 1, keeping its chunks.
///
/// `KEYS`: data key, record. `ARGV`: write id, chunk count, size, chunk size, expiry in ms (0 for
/// none), now in ms, only if absent (`1`/`0`), grace in ms.
pub(crate) const PUBLISH: &str = concat!(
    each_chunk!(),
    r"
local data, record = KEYS[1], KEYS[2]
local id, n, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[5])
local head = '{' .. data .. '}:c:'
for i = 0, n - 1 do
  if redis.call('EXISTS', head .. id .. ':' .. i) == 0 then return -1 end
end
if ARGV[7] == '1' and redis.call('EXISTS', data) == 1 then
  -- This very write, published by a first run whose reply was lost: done.
  if redis.call('TYPE', data)['ok'] == 'hash' and redis.call('HGET', data, 'w') == id then
    return 1
  end
  for i = 0, n - 1 do redis.call('UNLINK', head .. id .. ':' .. i) end
  return 0
end
local current = false
if redis.call('TYPE', data)['ok'] == 'hash' then current = redis.call('HGET', data, 'w') end
if current ~= id then
  each_chunk(data, function(chunk) return redis.call('PEXPIRE', chunk, ARGV[8]) end)
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
"
);

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MAX_CHUNK_SIZE;
    use crate::manifest::{MAX_CHUNKS, MAX_ID_LEN};

    /// The bounds written into the scripts are those the client checks.
    #[test]
    fn scripts_bound_manifests_like_the_client() {
        let each = each_chunk!();
        assert!(each.contains(&format!("string.len(id) > {MAX_ID_LEN}")));
        assert!(each.contains(&format!("n > {MAX_CHUNKS}")));
        assert!(each.contains(&format!("c > {MAX_CHUNK_SIZE}")));
        // The walk stops at the first chunk that does not exist, and every walker says so.
        assert!(each.contains("if f(head .. i) == 0 then return end"));
        for script in [WRITE, DELETE, PUBLISH] {
            let walkers = script.matches("each_chunk(data, function(chunk) return redis.call(");
            let all = script.matches("each_chunk(data, function").count();
            assert!(all > 0 && walkers.count() == all, "{script}");
        }
        for script in [WRITE, DELETE, PUBLISH] {
            assert!(script.starts_with(each), "{script}");
        }
    }
}
