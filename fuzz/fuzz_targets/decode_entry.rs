//! Parsing and decoding an entry never panic and never allocate much more than its real size,
//! whatever its header claims: the bytes as given, and the same bytes with valid checksums
//! (so that the decoder proper is reached). See `fuzz_support::check_decode`.

#![no_main]

#[path = "../../crates/memory-core/tests/fuzz_support/mod.rs"]
mod fuzz_support;

use fuzz_support::{Counting, check_decode};
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fuzz_target!(|data: &[u8]| check_decode(data));
