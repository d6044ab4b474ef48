//! How long listing a store of many entries takes, sequentially (`list_concurrency = 1`, one
//! listing request after another) and in parallel (`list_concurrency = 16`, over the hex
//! sub-prefixes of the entries' folder), measured in the same run, rounds interleaved, on the
//! S3 test server, in a bucket of its own. Both listings must give the same keys, those
//! written; the times and their ratio are printed, never asserted (a test server on a shared
//! machine is no benchmark). Run it with
//!
//! ```text
//! CI=true cargo test --release -p cachette-s3 --test list_speed -- --nocapture
//! ```
//!
//! `CACHETTE_LIST_SPEED_ENTRIES` (default 300) and `CACHETTE_LIST_SPEED_ROUNDS` (default 1)
//! change the size and the number of rounds.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use cachette_core::plugin::{Bytes, Prefix, StoreBackend, block_on};
use cachette_s3::object_store::path::Path;
use cachette_s3::object_store::{ObjectStoreExt, PutPayload};
use futures::{StreamExt, TryStreamExt};

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

#[test]
fn listing_sequential_vs_parallel() {
    let n = env_number("CACHETTE_LIST_SPEED_ENTRIES", 300);
    let rounds = env_number("CACHETTE_LIST_SPEED_ROUNDS", 1).max(1);
    let Some(server) = support::server() else {
        return;
    };
    let bucket = server.own_bucket("list-speed");
    let config = bucket.config_via(&server.endpoint, "list-speed");
    let writer = config.build_backend().unwrap();
    let root = writer.prefix().to_owned();

    // The entries of one function, stored directly, 32 at a time.
    let started = Instant::now();
    let folder = format!("{root}/cachette/speed.f-0123456789abcdef");
    block_on(false, {
        let store = writer.store().clone();
        let folder = folder.clone();
        async move {
            futures::stream::iter(0..n)
                .map(|i| {
                    let (store, folder) = (&store, &folder);
                    async move {
                        let name =
                            (i as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835);
                        let path = Path::parse(format!("{folder}/{name:032x}")).unwrap();
                        store
                            .put(&path, PutPayload::from(Bytes::from_static(b"entry")))
                            .await
                            .unwrap();
                    }
                })
                .buffer_unordered(32)
                .collect::<()>()
                .await
        }
    })
    .unwrap();
    println!("stored {n} objects in {:?}", started.elapsed());

    let written: BTreeSet<String> = (0..n)
        .map(|i| {
            let name = (i as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835);
            format!("cachette/speed.f-0123456789abcdef/{name:032x}")
        })
        .collect();
    assert_eq!(written.len() as u64, n);
    let prefix = Prefix::new("cachette").unwrap();
    let mut times: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    let concurrency = [1, 16];
    for round in 0..rounds {
        for (i, c) in concurrency.iter().enumerate() {
            let mut config = config.clone();
            config.list_concurrency = *c;
            let backend = config.build_backend().unwrap();
            let prefix = prefix.clone();
            let started = Instant::now();
            let items = block_on(false, async move { backend.list(&prefix).await })
                .unwrap()
                .unwrap();
            let took = started.elapsed();
            let keys: BTreeSet<String> = items.iter().map(|i| i.key.as_str().to_owned()).collect();
            assert_eq!(keys.len(), items.len(), "a key listed twice");
            assert!(
                keys == written,
                "list_concurrency = {c} listed other keys than those written"
            );
            println!("round {round}: list_concurrency = {c}: {took:?}");
            times[i].push(took);
        }
    }
    let sequential = median(times[0].clone());
    let parallel = median(times[1].clone());
    println!(
        "listing {n} entries, medians of {rounds} interleaved rounds: sequential {sequential:?}, parallel (16) {parallel:?}: {:.1}x",
        sequential.as_secs_f64() / parallel.as_secs_f64()
    );

    // Empty the bucket, so that it can go.
    block_on(false, {
        let store = writer.store().clone();
        async move {
            let all = store.list(None).map_ok(|m| m.location).boxed();
            let deleted: Vec<Path> = store.delete_stream(all).try_collect().await.unwrap();
            println!("deleted {} objects", deleted.len());
        }
    })
    .unwrap();
}
