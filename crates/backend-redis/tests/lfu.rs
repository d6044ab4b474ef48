//! Servers that evict by frequency keep no idle time: access times go to the records. Each test
//! starts its own `redis-server` with an LFU `maxmemory-policy`.

mod common;

use std::time::Duration;

use bytes::Bytes;
use cachette_core::plugin::{Key, Prefix, StoreBackend, StoreBackendExt, testkit};
use cachette_redis::RedisConfig;

fn server(extra: &[&str]) -> Option<common::Server> {
    let bin = testkit::server_from_env("CACHETTE_TEST_REDIS_SERVER_BIN")?;
    let mut args = vec!["--maxmemory-policy", "allkeys-lfu"];
    args.extend_from_slice(extra);
    Some(common::Server::start(&bin, &args))
}

/// `auto` reads the policy and keeps access times in the records: the whole suite passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lfu_server_passes_the_suite() {
    let Some(server) = server(&[]) else {
        return;
    };
    let backend = RedisConfig::from_url(&server.url(""))
        .unwrap()
        .build_backend()
        .unwrap();
    testkit::run_all(common::dyn_backend(backend)).await;
}

/// A server that refuses `CONFIG`: the first listing meets the LFU error and switches to the
/// records' time stamps; reads are recorded from then on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lfu_without_config_switches_on_first_listing() {
    let Some(server) = server(&["--rename-command", "CONFIG", ""]) else {
        return;
    };
    let b = RedisConfig::from_url(&server.url(""))
        .unwrap()
        .build_backend()
        .unwrap();
    let (old, new) = (Key::new("l/old").unwrap(), Key::new("l/new").unwrap());
    b.put(&old, Bytes::from_static(b"1").into()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    b.put(&new, Bytes::from_static(b"2").into()).await.unwrap();
    let at = |items: &[cachette_core::plugin::ItemInfo], k: &Key| {
        items
            .iter()
            .find(|i| &i.key == k)
            .expect("listed")
            .last_access
    };
    let first = b.list(&Prefix::new("l").unwrap()).await.unwrap();
    assert!(
        at(&first, &new) > at(&first, &old),
        "write times: {first:?}"
    );
    assert!(b.get(&old).await.unwrap().is_some());
    let second = b.list(&Prefix::new("l").unwrap()).await.unwrap();
    assert!(
        at(&second, &old) > at(&second, &new),
        "read recorded: {second:?}"
    );
}
