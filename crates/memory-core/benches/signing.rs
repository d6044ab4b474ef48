//! What signing costs a hit: the same memoized call answered from an in-process store, with
//! and without a signing key, for an output of 1 KiB and of 16 MiB (`f64` arrays; a signed hit
//! checks the whole entry's HMAC-SHA256 before decoding it). Run with
//! `cargo bench -p cachette-core --bench signing`; run as a test (`cargo test --benches`) it
//! only checks that each case answers.

use cachette_core::{Array, Memory, SigningKey};
use divan::counter::BytesCount;
use divan::{Bencher, black_box};

fn main() {
    divan::main();
}

fn make(len: usize) -> Array<f64> {
    Array::from(vec![0.5; len / 8])
}

#[divan::bench(args = [1 << 10, 16 << 20], consts = [false, true])]
fn hit<const SIGNED: bool>(bencher: Bencher, len: usize) {
    let mut builder = Memory::builder().url(format!("memory://bench-signing-{len}-{SIGNED}"));
    if SIGNED {
        builder = builder.signing_key(SigningKey::new("a signing key for the benchmark").unwrap());
    }
    let memory = builder.build().expect("memory");
    let f = memory
        .cache_fn(make as fn(usize) -> Array<f64>)
        .name("bench::make");
    assert_eq!(f.eval(len).as_slice().len(), len / 8);
    bencher
        .counter(BytesCount::new(len))
        .bench_local(|| black_box(f.eval(black_box(len))));
}
