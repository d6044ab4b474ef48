//! Listings with many requests at once, against an in-memory store that serves pages of a few
//! objects, so that small sets of names go through every cut: folders, hex prefixes, the
//! ranges between them, a second level of cuts. Every listing must give exactly the objects a
//! sequential listing gives, whatever their names.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use cachette_core::plugin::{Bytes, Prefix, StoreBackend, StoreBackendExt};
use cachette_s3::S3Backend;
use cachette_s3::object_store::ObjectStoreExt;
use cachette_s3::object_store::path::Path;
use support::paged::Paged;

/// Names under the backend's prefix: folders of hex entries (with claims and identity
/// items), odd names around the cuts, nested folders.
fn names() -> Vec<String> {
    let mut names = Vec::new();
    let hex = |i: u32| {
        format!(
            "{:032x}",
            (i as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)
        )
    };
    for i in 0..300 {
        names.push(format!("cachette/big-0123456789abcdef/{}", hex(i)));
        if i % 7 == 0 {
            names.push(format!("cachette/big-0123456789abcdef/{}.claim", hex(i)));
        }
    }
    names.push("cachette/big-0123456789abcdef/func_code".to_owned());
    for odd in [
        "-dash",
        ".dot",
        "0",
        "00",
        "9",
        "9z",
        ":colon",
        "A",
        "Fupper",
        "_under",
        "`tick",
        "f",
        "g",
        "zz",
        "~tilde",
        "é",
        "日本",
        "sub/deeper/x",
        "sub/y",
    ] {
        names.push(format!("cachette/big-0123456789abcdef/{odd}"));
    }
    for f in 0..12 {
        for i in 0..(f * 3) {
            names.push(format!("cachette/small-{f}/{}", hex(1000 + f * 100 + i)));
        }
        names.push(format!("cachette/small-{f}/func_code"));
    }
    names.push("cachette/top-level-object".to_owned());
    names.push("elsewhere/a".to_owned());
    names.push("z".to_owned());
    names
}

async fn filled(page: usize) -> Arc<Paged> {
    let store = Arc::new(Paged::new(page));
    for name in names() {
        store
            .put(
                &Path::parse(format!("p/{name}")).unwrap(),
                Bytes::from_static(b"v").into(),
            )
            .await
            .unwrap();
    }
    store
}

fn listed(items: &[cachette_core::plugin::ItemInfo]) -> Vec<String> {
    let mut keys: Vec<String> = items.iter().map(|i| i.key.to_string()).collect();
    let unique: BTreeSet<&String> = keys.iter().collect();
    assert_eq!(unique.len(), keys.len(), "an object was listed twice");
    keys.sort();
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_cut_lists_each_object_exactly_once() {
    let mut expected: Vec<String> = names();
    expected.sort();
    for page in [2, 7, 40] {
        let store = filled(page).await;
        for concurrency in [1, 2, 16, 17, 64] {
            let backend = S3Backend::from_paginated_store(store.clone(), "p")
                .unwrap()
                .with_list_concurrency(concurrency);
            store.most_in_flight.store(0, Ordering::SeqCst);
            let all = backend.list(&Prefix::root()).await.unwrap();
            assert_eq!(
                listed(&all),
                expected,
                "page {page}, concurrency {concurrency}"
            );
            // The listing of the items, and beside it the one of the access logs' folders.
            assert!(
                store.most_in_flight.load(Ordering::SeqCst) <= concurrency + 1,
                "more than {concurrency} requests at once, and one of the access logs"
            );
            for prefix in [
                "cachette",
                "cachette/big-0123456789abcdef",
                "cachette/small-3",
                "elsewhere",
            ] {
                let under = backend.list(&Prefix::new(prefix).unwrap()).await.unwrap();
                let want: Vec<&String> = expected
                    .iter()
                    .filter(|k| k.starts_with(&format!("{prefix}/")))
                    .collect();
                assert_eq!(
                    listed(&under).iter().collect::<Vec<_>>(),
                    want,
                    "{prefix}, page {page}, concurrency {concurrency}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_small_store_takes_one_request_and_a_large_one_spreads() {
    // Pages of 1000, as S3's: everything fits in one page.
    let store = filled(1000).await;
    let backend = S3Backend::from_paginated_store(store.clone(), "p")
        .unwrap()
        .with_list_concurrency(16)
        .with_access_granularity(None);
    store.requests.store(0, Ordering::SeqCst);
    let items = backend
        .list(&Prefix::new("cachette").unwrap())
        .await
        .unwrap();
    let under = names()
        .iter()
        .filter(|n| n.starts_with("cachette/"))
        .count();
    assert_eq!(items.len(), under);
    // The items, the markers of older versions, the access log folders.
    assert_eq!(
        store.requests.load(Ordering::SeqCst),
        3,
        "one page of items, one of markers, one of the access log folders"
    );

    // Pages of 10: the big folder is cut, and listed at up to 16 requests at once.
    let store = filled(10).await;
    let backend = S3Backend::from_paginated_store(store.clone(), "p")
        .unwrap()
        .with_list_concurrency(16);
    store.most_in_flight.store(0, Ordering::SeqCst);
    backend
        .list(&Prefix::new("cachette").unwrap())
        .await
        .unwrap();
    assert!(store.most_in_flight.load(Ordering::SeqCst) > 4);
    let key = cachette_core::plugin::Key::new("cachette/small-1/func_code").unwrap();
    assert!(backend.contains(&key).await.unwrap());
}
