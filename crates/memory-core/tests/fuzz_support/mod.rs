//! The properties the entry decoder is fuzzed against, shared by the mutation fuzzer
//! (`tests/fuzz_entries.rs`) and the cargo-fuzz targets (`fuzz/fuzz_targets/`), which include
//! this file by path. Each cargo-fuzz target is one function here, so that `cargo test` checks
//! every committed corpus file exactly as the target does:
//!
//! - [`check_decode`] (target `decode_entry`): parsing and decoding an entry never panic and
//!   never allocate much more than its real size ([`check_entry`]), on the bytes as given and
//!   on the same bytes with their checksums made valid ([`reseal`]), so that the decoder
//!   proper is reached;
//! - [`Stage::check_load`] (target `load_entry`): through a `Memory`, an entry that a load must
//!   refuse is a miss, and the call gives the right value, computed.
//!
//! A binary that includes this module declares the counting allocator as its global allocator:
//! `#[global_allocator] static ALLOCATOR: Counting = Counting;`.

// Each includer uses a part of the module.
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;

use bytes::Bytes;
use cachette_core::MessagePack;
use cachette_core::plugin::entry::{self, Entry, Metadata, decode_value, encode_parts};
use cachette_core::plugin::{
    InMemoryBackend, Key, Prefix, StoreBackend, StoreBackendExt, block_on,
};
use cachette_core::{Array, MemorizedFunc, Memory, MmapMode};
use serde::{Deserialize, Serialize};

// ------------------------------------------------------------------ counting allocator

/// The system allocator, counting each thread's live bytes and their peak.
pub(crate) struct Counting;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn add(n: usize) {
    // `try_with`: the thread's counters may be gone while it exits.
    let _ = LIVE.try_with(|live| {
        let now = live.get() + n;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

fn sub(n: usize) {
    let _ = LIVE.try_with(|live| live.set(live.get().saturating_sub(n)));
}

// SAFETY: forwards to the system allocator; the counters are thread-local cells that never
// allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        add(layout.size());
        // SAFETY: forwarded.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        sub(layout.size());
        // SAFETY: forwarded.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        add(layout.size());
        // SAFETY: forwarded.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        add(new_size);
        sub(layout.size());
        // SAFETY: forwarded.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Runs `f` and gives the most bytes it had allocated at once (on this thread).
pub(crate) fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let out = f();
    (out, PEAK.with(Cell::get).saturating_sub(base))
}

// ------------------------------------------------------------------ outputs and entries

/// The output type of the seeds: something of everything the codec meets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Output {
    pub(crate) name: String,
    pub(crate) values: Vec<i64>,
    pub(crate) nested: Vec<(u8, Option<String>)>,
    pub(crate) array: Option<Array<f64>>,
}

/// An output of size `n`, with an array or not.
pub(crate) fn output(with_array: bool, n: usize) -> Output {
    Output {
        name: "fuzz".repeat(n % 7 + 1),
        values: (0..n as i64).collect(),
        nested: vec![(1, Some("x".into())), (2, None)],
        array: with_array.then(|| Array::from((0..n).map(|i| i as f64).collect::<Vec<_>>())),
    }
}

/// The metadata of hand-built entries.
pub(crate) fn metadata() -> Metadata {
    Metadata::new(
        0.5,
        chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
        vec![("x".into(), "1".into())],
        "fuzz.f",
        "00000000000000000000000000000001",
        "xxh3-128",
        "msgpack",
    )
}

/// Every entry `backend` holds, without the functions' code records.
fn entries_in(backend: &InMemoryBackend) -> Vec<Vec<u8>> {
    let items = block_on(false, backend.list(&Prefix::root()))
        .unwrap()
        .unwrap();
    let mut out = Vec::new();
    for item in items {
        if item.key.as_str().ends_with("func_code") {
            continue;
        }
        let bytes = block_on(false, backend.get(&item.key))
            .unwrap()
            .unwrap()
            .unwrap();
        out.push(bytes.to_vec());
    }
    out
}

/// Valid entries of every kind, as stored by a memory (through a real `Memory` so that the
/// arrays are laid out as in production), and codec garbage in valid entries.
pub(crate) fn seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (compress, arrays, n) in [
        (None, false, 3),
        (None, true, 5),
        (Some(3), false, 40),
        (Some(3), true, 9),
        (None, true, 0),
        (None, false, 300),
    ] {
        let backend = Arc::new(InMemoryBackend::new());
        let mut builder = Memory::builder().backend(backend.clone());
        if let Some(level) = compress {
            builder = builder.compress(level);
        }
        let memory = builder.build().unwrap();
        let f = memory
            .cache_with(arrays, |arrays: &bool, k: usize| output(*arrays, k))
            .name("fuzz::seed");
        f.eval(n);
        out.extend(entries_in(&backend));
    }
    // Hand-built entries: codec garbage with valid checksums.
    for structure in [
        vec![],
        vec![0xc1],
        vec![0xdd, 0xff, 0xff, 0xff, 0xff],
        vec![0x92; 64],
    ] {
        out.push(
            encode_parts(&metadata(), structure, Vec::new(), None)
                .unwrap()
                .to_bytes()
                .to_vec(),
        );
    }
    out
}

// ------------------------------------------------------------------ decoding

/// The most a compressed payload may decompress to in these checks (a reader's
/// `max_decompressed_size`): a decode allocates at most [`allowance`] of the larger of this and
/// the input, whatever the entry announces.
pub(crate) const MAX_DECOMPRESSED: u64 = 1 << 20;

/// The most a decode of `input` bytes may allocate at once: a few times its size (a copy of the
/// payload, a decoded value no larger than the bytes it came from, growth of vectors) plus a
/// fixed allowance. A compressed payload counts as its decompressed size, which is at most
/// [`MAX_DECOMPRESSED`].
pub(crate) fn allowance(input: usize) -> usize {
    8 * input + (4 << 20)
}

/// Parses and decodes `input` every way a reader does; panics only through the checks.
pub(crate) fn check_entry(input: &[u8]) {
    let (decompressed, peak) = peak_of(|| {
        let mut decompressed = 0;
        let _ = entry::parse_metadata(input, Some(input.len() as u64));
        for full in [true, false] {
            let bytes = Bytes::copy_from_slice(input);
            let parsed = if full {
                Entry::parse(bytes)
            } else {
                Entry::parse_head(bytes)
            };
            let Ok(entry) = parsed else { continue };
            let _ = entry.metadata();
            if let Ok(payload) = entry.decode_payload_within(MAX_DECOMPRESSED) {
                decompressed = decompressed.max(payload.bytes().len());
                let structure = payload.structure();
                let _ = decode_value::<Output>(&MessagePack, structure);
                let _ = decode_value::<Vec<u64>>(&MessagePack, structure);
                let _ = decode_value::<String>(&MessagePack, structure);
                let _ = decode_value::<Array<f64>>(&MessagePack, structure);
                let _ =
                    decode_value::<(Vec<Array<u8>>, Option<Array<i32>>)>(&MessagePack, structure);
            }
        }
        decompressed
    });
    assert!(
        decompressed as u64 <= MAX_DECOMPRESSED.max(input.len() as u64),
        "a {}-byte entry decompressed to {decompressed} bytes, over the cap",
        input.len()
    );
    let limit = allowance(input.len().max(decompressed));
    assert!(
        peak <= limit,
        "decoding a {}-byte entry ({decompressed} bytes decompressed) allocated {peak} bytes at once",
        input.len()
    );
}

fn read_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn read_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn write_u64(b: &mut [u8], at: usize, v: u64) {
    if let Some(slot) = b.get_mut(at..at + 8) {
        slot.copy_from_slice(&v.to_le_bytes());
    }
}

/// `input` with the payload length of its prefix and every checksum made right for the bytes
/// it holds, as a writer of a shared store could forge it; `None` when the prefix is too
/// damaged to say where the parts are (the raw bytes test that already). A signature is left
/// as it is.
pub(crate) fn reseal(input: &[u8]) -> Option<Vec<u8>> {
    if input.len() < entry::PREFIX_LEN || !input.starts_with(entry::MAGIC) {
        return None;
    }
    let mut b = input.to_vec();
    let flags = u16::from_le_bytes([b[10], b[11]]);
    let header_end = entry::PREFIX_LEN.checked_add(read_u32(&b, 12)? as usize)?;
    let offset = read_u32(&b, 40)? as usize;
    if header_end > offset || offset > b.len() {
        return None;
    }
    let payload_len = (b.len() - offset) as u64;
    write_u64(&mut b, 16, payload_len);
    let mut h = xxhash_rust::xxh3::Xxh3Default::new();
    h.update(&b[0..24]);
    h.update(&b[40..48]);
    h.update(&b[entry::PREFIX_LEN..header_end]);
    let header_checksum = h.digest();
    write_u64(&mut b, 24, header_checksum);
    let arrays = flags & entry::FLAG_ARRAYS != 0 && flags & entry::FLAG_ZSTD == 0;
    let payload = &mut b[offset..];
    let checked = if arrays {
        reseal_arrays(payload)
    } else {
        payload.len()
    };
    let payload_checksum = xxhash_rust::xxh3::xxh3_64(&payload[..checked]);
    write_u64(&mut b, 32, payload_checksum);
    Some(b)
}

/// Makes the block checksums of a payload with out-of-line arrays right, as far as its layout
/// can be followed; gives the length of the payload's head (which the payload checksum covers).
fn reseal_arrays(payload: &mut [u8]) -> usize {
    let len = payload.len();
    let layout = || -> Option<(usize, usize, usize)> {
        let s = usize::try_from(read_u64(payload, 0)?).ok()?;
        let n = usize::try_from(read_u64(payload, 8)?).ok()?;
        let m = usize::try_from(read_u64(payload, 16)?).ok()?;
        let head = n
            .checked_mul(16)?
            .checked_add(m.checked_mul(8)?)?
            .checked_add(24)?
            .checked_add(s)?;
        (head <= len).then_some((24 + s, n, head))
    };
    let Some((table, n, head)) = layout() else {
        return len;
    };
    let mut blocks = table + 16 * n;
    let mut first = None;
    for i in 0..n {
        let (Some(start), Some(size)) = (
            read_u64(payload, table + 16 * i),
            read_u64(payload, table + 16 * i + 8),
        ) else {
            break;
        };
        let (Ok(start), Ok(size)) = (usize::try_from(start), usize::try_from(size)) else {
            break;
        };
        first.get_or_insert(start);
        let Some(end) = size
            .checked_next_multiple_of(entry::PAYLOAD_ALIGN)
            .and_then(|padded| start.checked_add(padded))
            .filter(|&end| end <= len)
        else {
            break;
        };
        for block in (start..end).step_by(entry::ARRAY_BLOCK) {
            if blocks + 8 > head {
                break;
            }
            let sum =
                xxhash_rust::xxh3::xxh3_64(&payload[block..end.min(block + entry::ARRAY_BLOCK)]);
            write_u64(payload, blocks, sum);
            blocks += 8;
        }
    }
    first.map_or(len, |start| start.min(len))
}

/// The property of the `decode_entry` target: [`check_entry`] on `input`, and on `input`
/// resealed.
pub(crate) fn check_decode(input: &[u8]) {
    check_entry(input);
    if let Some(resealed) = reseal(input).filter(|r| r != input) {
        check_entry(&resealed);
    }
}

// ------------------------------------------------------------------ loading

/// The function a [`Stage`] memoizes: an output with an array for odd arguments.
fn stage_output(k: usize) -> Output {
    output(k % 2 == 1, k)
}

/// The calls a [`Stage`] stores entries for: one whose output has an array, one without.
const STAGE_CALLS: [usize; 2] = [7, 8];

/// A memory whose function has a stored result for each of [`STAGE_CALLS`], to store other
/// bytes in place of those entries and call the function again.
pub(crate) struct Stage {
    backend: Arc<InMemoryBackend>,
    f: MemorizedFunc<Output, fn(usize) -> Output>,
    keys: Vec<(usize, Key)>,
}

impl Stage {
    /// A stage whose memory loads as `mode` says and writes with `compress`.
    pub(crate) fn new(mode: MmapMode, compress: Option<i32>) -> Stage {
        let backend = Arc::new(InMemoryBackend::new());
        let mut builder = Memory::builder()
            .backend(backend.clone())
            .max_decompressed_size(MAX_DECOMPRESSED)
            .mmap_mode(mode)
            .reporter(cachette_core::Reporter::new(|_| {}));
        if let Some(level) = compress {
            builder = builder.compress(level);
        }
        let memory = builder.build().unwrap();
        let f = memory.cache_fn(stage_output).name("fuzz::stage");
        let keys = STAGE_CALLS
            .iter()
            .map(|&k| {
                let cachette_core::Shelved::Memorized(shelved) = f.call_and_shelve(k) else {
                    panic!("not stored");
                };
                let key =
                    Key::new(format!("cachette/{}/{}", shelved.func(), shelved.args_id())).unwrap();
                (k, key)
            })
            .collect();
        Stage { backend, f, keys }
    }

    /// The entries the stage's memory wrote.
    pub(crate) fn entries(&self) -> Vec<Vec<u8>> {
        entries_in(&self.backend)
    }

    /// The call whose key `input` names in its metadata, else the first.
    fn call_for(&self, input: &[u8]) -> &(usize, Key) {
        let named = entry::parse_metadata(input, None).ok();
        named
            .and_then(|m| {
                self.keys
                    .iter()
                    .find(|(_, key)| key.file_name() == m.args_id)
            })
            .unwrap_or(&self.keys[0])
    }

    /// Stores `input` in place of a stored entry and calls the function: the call never
    /// panics, and with `exact` (the input is a damaged real entry) it gives the right value,
    /// loaded or computed.
    pub(crate) fn check(&self, input: &[u8], exact: bool) {
        let (k, key) = self.call_for(input);
        block_on(
            false,
            self.backend.put(key, Bytes::copy_from_slice(input).into()),
        )
        .unwrap()
        .unwrap();
        let got = self.f.eval(*k);
        if exact {
            assert_eq!(got, stage_output(*k), "a damaged entry gave a wrong value");
        }
    }

    /// The property of the `load_entry` target: [`check`](Self::check) on `input` and on
    /// `input` resealed, exact unless the bytes are a whole, valid entry written for the call
    /// (forged: only a signature could tell it from a real one).
    pub(crate) fn check_load(&self, input: &[u8]) {
        self.check(input, !self.is_valid_entry(input));
        if let Some(resealed) = reseal(input).filter(|r| r != input) {
            self.check(&resealed, !self.is_valid_entry(&resealed));
        }
    }

    /// Whether a load would accept `input` as the entry of its call.
    fn is_valid_entry(&self, input: &[u8]) -> bool {
        let (_, key) = self.call_for(input);
        let (_, folder) = key.parent().split_once('/').expect("a namespaced key");
        let expected = entry::Expected {
            func: folder,
            args_id: key.file_name(),
            code: Some(entry::CodeIdentity {
                name: self.f.id().name(),
                code: None,
                version: None,
            }),
            codec: Some("msgpack"),
        };
        Entry::parse(Bytes::copy_from_slice(input))
            .and_then(|e| e.check_written_for(&expected))
            .is_ok()
    }
}
