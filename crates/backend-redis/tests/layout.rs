//! What the backend writes in Redis: namespaces that do not see each other, glob characters,
//! hash tags, and items whose record is gone.

mod common;

use std::time::Duration;

use bytes::Bytes;
use cachette_core::plugin::{Key, Prefix, PutOptions, StoreBackend, StoreBackendExt};
use cachette_redis::{AccessTracking, RedisConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_are_separate() {
    let Some(url) = common::single_url() else {
        return;
    };
    let base = common::unique_prefix("ns");
    let outer = RedisConfig::new(url.clone())
        .with_prefix(&base)
        .build_backend()
        .unwrap();
    let nested = RedisConfig::new(url.clone())
        .with_prefix(format!("{base}:sub"))
        .build_backend()
        .unwrap();
    let globby = RedisConfig::new(url)
        .with_prefix(format!("{base}*?[x]"))
        .build_backend()
        .unwrap();
    let key = Key::new("f/sub:item").unwrap();
    for (i, b) in [&outer, &nested, &globby].into_iter().enumerate() {
        b.put(&key, Bytes::from(vec![i as u8; 3]).into())
            .await
            .unwrap();
        b.put(&Key::new("f/x").unwrap(), Bytes::from_static(b"x").into())
            .await
            .unwrap();
    }
    for (i, b) in [&outer, &nested, &globby].into_iter().enumerate() {
        assert_eq!(b.get(&key).await.unwrap().unwrap()[0], i as u8);
        let mut listed: Vec<String> = b
            .list(&Prefix::root())
            .await
            .unwrap()
            .into_iter()
            .map(|i| i.key.to_string())
            .collect();
        listed.sort();
        assert_eq!(listed, ["f/sub:item", "f/x"], "namespace {i}");
    }
    // The data key carries the escaped key, the record its hash tag.
    let mut raw = common::Raw::of(&outer).await;
    let data = format!("{base}:f/sub%3Aitem");
    let kind: String = raw.query(redis::cmd("TYPE").arg(&data)).await;
    assert_eq!(kind, "string");
    let size: Option<u64> = raw
        .query(redis::cmd("HGET").arg(format!("{{{data}}}:s")).arg("s"))
        .await;
    assert_eq!(size, Some(3));

    assert_eq!(outer.delete_prefix(&Prefix::root()).await.unwrap(), 2);
    for b in [&nested, &globby] {
        assert_eq!(b.list(&Prefix::root()).await.unwrap().len(), 2);
        assert_eq!(b.delete_prefix(&Prefix::root()).await.unwrap(), 2);
    }
}

/// Keys with glob characters list and delete exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glob_characters_in_keys() {
    for (kind, b) in common::both("glob", |c| c) {
        for name in ["a*/x", "a?/x", "a[b]/x", "a^b/x", "ab/x", "a/x", "a*b/x"] {
            b.put(&Key::new(name).unwrap(), Bytes::from_static(b"1").into())
                .await
                .unwrap();
        }
        for (prefix, expected) in [
            ("a*", vec!["a*/x"]),
            ("a?", vec!["a?/x"]),
            ("a[b]", vec!["a[b]/x"]),
            ("a^", vec![]),
            ("a^b", vec!["a^b/x"]),
            ("a", vec!["a/x"]),
        ] {
            let prefix = Prefix::new(prefix).unwrap();
            let listed: Vec<String> = b
                .list(&prefix)
                .await
                .unwrap()
                .into_iter()
                .map(|i| i.key.to_string())
                .collect();
            assert_eq!(listed, expected, "{kind}: {prefix:?}");
        }
        assert_eq!(
            b.delete_prefix(&Prefix::new("a*").unwrap()).await.unwrap(),
            1
        );
        assert_eq!(b.list(&Prefix::root()).await.unwrap().len(), 6, "{kind}");
        b.delete_prefix(&Prefix::root()).await.unwrap();
    }
}

/// An item whose record was evicted is still listed with its size, and listing does not write
/// the record again: it writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_does_without_records() {
    for (kind, b) in common::both("records", |c| c.with_chunk_size(100)) {
        let mut raw = common::Raw::of(&b).await;
        let prefix = b.config().prefix.clone();
        let opts = PutOptions::with_ttl(Some(Duration::from_secs(100)));
        b.put_opts(
            &Key::new("r/small").unwrap(),
            Bytes::from(vec![1u8; 42]).into(),
            opts.clone(),
        )
        .await
        .unwrap();
        b.put_opts(
            &Key::new("r/big").unwrap(),
            Bytes::from(vec![2u8; 420]).into(),
            opts.clone(),
        )
        .await
        .unwrap();
        for name in ["r/small", "r/big"] {
            let removed: i64 = raw
                .query(redis::cmd("UNLINK").arg(format!("{{{prefix}:{name}}}:s")))
                .await;
            assert_eq!(removed, 1, "{kind}");
        }
        let mut sizes: Vec<(String, u64)> = b
            .list(&Prefix::new("r").unwrap())
            .await
            .unwrap()
            .into_iter()
            .map(|i| (i.key.to_string(), i.size))
            .collect();
        sizes.sort();
        assert_eq!(
            sizes,
            [("r/big".to_owned(), 420), ("r/small".to_owned(), 42)],
            "{kind}"
        );
        for name in ["r/small", "r/big"] {
            let record = format!("{{{prefix}:{name}}}:s");
            let exists: i64 = raw.query(redis::cmd("EXISTS").arg(&record)).await;
            assert_eq!(exists, 0, "{kind}: listing wrote {record}");
        }
        b.delete_prefix(&Prefix::root()).await.unwrap();
        assert!(raw.keys(&format!("*{prefix}*")).await.is_empty(), "{kind}");
    }
}

/// Stored access times come from the clients' clocks and the store: one in the future is taken
/// as now (else the item would look recently used for ever), one that does not parse is
/// ignored (the item counts as never read).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_access_times_are_bounded() {
    for (kind, b) in common::both("stored-times", |c| {
        c.with_access_tracking(AccessTracking::Stored)
    }) {
        let mut raw = common::Raw::of(&b).await;
        let prefix = b.config().prefix.clone();
        for (name, at) in [
            ("future", "4102444800000".to_owned()),
            ("junk", "soon".to_owned()),
            ("long", "1".repeat(1000)),
        ] {
            b.put(
                &Key::new(format!("a/{name}")).unwrap(),
                Bytes::from_static(b"v").into(),
            )
            .await
            .unwrap();
            raw.query::<()>(
                redis::cmd("HSET")
                    .arg(format!("{{{prefix}:a/{name}}}:s"))
                    .arg("a")
                    .arg(at),
            )
            .await;
        }
        let before = chrono::Utc::now();
        let listed = b.list(&Prefix::new("a").unwrap()).await.unwrap();
        let after = chrono::Utc::now();
        let at = |name: &str| {
            listed
                .iter()
                .find(|i| i.key.as_str() == format!("a/{name}"))
                .expect("listed")
                .last_access
        };
        assert!(
            (before..=after).contains(&at("future")),
            "{kind}: a future time is now: {listed:?}"
        );
        assert_eq!(at("junk"), chrono::DateTime::UNIX_EPOCH, "{kind}");
        assert_eq!(at("long"), chrono::DateTime::UNIX_EPOCH, "{kind}");
        b.delete_prefix(&Prefix::root()).await.unwrap();
    }
}
