//! Through a `Memory` over an `InMemoryBackend`, an entry a load must refuse (damaged, cut
//! short, written for another call) is a miss, and the call gives the right value; nothing
//! panics. See `fuzz_support::Stage::check_load`.

#![no_main]

#[path = "../../crates/memory-core/tests/fuzz_support/mod.rs"]
mod fuzz_support;

use cachette_core::MmapMode;
use fuzz_support::{Counting, Stage};
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOCATOR: Counting = Counting;

thread_local! {
    static STAGE: Stage = Stage::new(MmapMode::None, None);
}

fuzz_target!(|data: &[u8]| STAGE.with(|stage| stage.check_load(data)));
