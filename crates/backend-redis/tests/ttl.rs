//! Native expiry: `PutOptions::ttl` and `default_ttl_secs` become `PX` expiries on every key of
//! an item.

mod common;

use std::time::Duration;

use bytes::Bytes;
use cachette_core::plugin::{Key, Prefix, PutOptions, PutOutcome, StoreBackend, StoreBackendExt};

fn ttl(ms: u64) -> PutOptions {
    PutOptions::with_ttl(Some(Duration::from_millis(ms)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_expire() {
    for (kind, b) in common::both("ttl", |c| c.with_chunk_size(1000)) {
        let mut raw = common::Raw::of(&b).await;
        let prefix = b.config().prefix.clone();
        let (small, big) = (Key::new("t/small").unwrap(), Key::new("t/big").unwrap());
        b.put_opts(&small, Bytes::from_static(b"soon gone").into(), ttl(1500))
            .await
            .unwrap();
        b.put_opts(&big, Bytes::from(vec![9u8; 4500]).into(), ttl(1500))
            .await
            .unwrap();
        assert!(b.contains(&small).await.unwrap(), "{kind}");
        assert_eq!(b.get(&big).await.unwrap().map(|v| v.len()), Some(4500));
        for key in [
            format!("{prefix}:t/small"),
            format!("{{{prefix}:t/small}}:s"),
            format!("{prefix}:t/big"),
            format!("{{{prefix}:t/big}}:s"),
        ] {
            let pttl: i64 = raw.query(redis::cmd("PTTL").arg(&key)).await;
            assert!((1..=1500).contains(&pttl), "{kind}: {key} has PTTL {pttl}");
        }
        for chunk in raw.keys(&format!("{{{prefix}:t/big}}:c:*")).await {
            let pttl: i64 = raw.query(redis::cmd("PTTL").arg(&chunk)).await;
            assert!(
                (1..=1500).contains(&pttl),
                "{kind}: {chunk} has PTTL {pttl}"
            );
        }
        tokio::time::sleep(Duration::from_millis(1700)).await;
        assert_eq!(b.get(&small).await.unwrap(), None, "{kind}");
        assert_eq!(b.get(&big).await.unwrap(), None, "{kind}");
        assert!(!b.contains(&small).await.unwrap());
        assert!(b.list(&Prefix::root()).await.unwrap().is_empty(), "{kind}");
        assert!(raw.keys(&format!("*{prefix}*")).await.is_empty(), "{kind}");
    }
}

/// A claim made with an expiry goes away by itself, so a crashed holder does not block others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_expire() {
    for (kind, b) in common::both("claim", |c| c) {
        let key = Key::new("lock/k").unwrap();
        let opts = PutOptions::create().ttl(Some(Duration::from_millis(800)));
        assert_eq!(
            b.put_opts(&key, Bytes::from_static(b"a").into(), opts.clone())
                .await
                .unwrap(),
            PutOutcome::Created
        );
        assert_eq!(
            b.put_opts(&key, Bytes::from_static(b"b").into(), opts.clone())
                .await
                .unwrap(),
            PutOutcome::AlreadyExists,
            "{kind}"
        );
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert_eq!(
            b.put_opts(&key, Bytes::from_static(b"c").into(), opts.clone())
                .await
                .unwrap(),
            PutOutcome::Created,
            "{kind}"
        );
        assert_eq!(b.get(&key).await.unwrap().as_deref(), Some(&b"c"[..]));
        b.delete(&key).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_ttl_applies_to_writes_without_one() {
    for (kind, b) in common::both("default-ttl", |c| {
        c.with_default_ttl(Some(Duration::from_secs(60)))
    }) {
        let mut raw = common::Raw::of(&b).await;
        let key = Key::new("d/x").unwrap();
        b.put(&key, Bytes::from_static(b"v").into()).await.unwrap();
        let pttl: i64 = raw
            .query(redis::cmd("PTTL").arg(format!("{}:d/x", b.config().prefix)))
            .await;
        assert!((50_000..=60_000).contains(&pttl), "{kind}: PTTL {pttl}");
        // An explicit expiry wins.
        b.put_opts(&key, Bytes::from_static(b"v").into(), ttl(5000))
            .await
            .unwrap();
        let pttl: i64 = raw
            .query(redis::cmd("PTTL").arg(format!("{}:d/x", b.config().prefix)))
            .await;
        assert!((1..=5000).contains(&pttl), "{kind}: PTTL {pttl}");
        // Replacing an item without expiry makes it permanent again (no default here).
        b.delete(&key).await.unwrap();
    }
}
