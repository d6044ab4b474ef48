//! `rediss://`: TLS through rustls, against a private `redis-server` serving TLS with a
//! self-signed certificate made by `openssl`.

mod common;

use std::process::Command;

use bytes::Bytes;
use cachette_core::plugin::{Key, Prefix, StoreBackend, StoreBackendExt, testkit};
use cachette_redis::RedisConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_round_trip() {
    let Some(bin) = testkit::server_from_env("CACHETTE_TEST_REDIS_SERVER_BIN") else {
        return;
    };
    let dir = std::env::temp_dir().join(testkit::unique_root("redis-tls"));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output();
    match made {
        Ok(out) if out.status.success() => {}
        other => {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            assert!(
                !ci,
                "cannot make a certificate with openssl, and CI=true: {other:?}"
            );
            eprintln!("SKIPPED: cannot make a certificate with openssl: {other:?}");
            return;
        }
    }
    let server = common::Server::start_tls(&bin, cert.to_str().unwrap(), key.to_str().unwrap());

    // The certificate is self-signed: verification fails, with a permanent error (no panic, no
    // hang, no retry).
    let strict = RedisConfig::from_url(&server.url("?connection_timeout_ms=1000"))
        .unwrap()
        .build_backend()
        .unwrap();
    let err = strict.contains(&Key::new("x").unwrap()).await.unwrap_err();
    assert_eq!(
        err.kind(),
        cachette_core::plugin::ErrorKind::ConfigInvalid,
        "{err}"
    );
    assert!(!err.is_temporary(), "{err}");
    assert!(err.to_string().contains("certificate"), "{err}");

    // `#insecure` skips verification.
    let backend = RedisConfig::from_url(&server.url("?prefix=tls#insecure"))
        .unwrap()
        .with_chunk_size(64 * 1024)
        .build_backend()
        .unwrap();
    for (name, size) in [("small", 100usize), ("chunked", 300 * 1024)] {
        let k = Key::new(format!("t/{name}")).unwrap();
        let value = Bytes::from((0..size).map(|i| i as u8).collect::<Vec<_>>());
        backend.put(&k, value.clone().into()).await.unwrap();
        assert_eq!(backend.get(&k).await.unwrap(), Some(value));
    }
    assert_eq!(backend.list(&Prefix::root()).await.unwrap().len(), 2);
    assert_eq!(backend.delete_prefix(&Prefix::root()).await.unwrap(), 2);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
