//! URLs, configuration files (the registry + TOML) and validation. No server needed.

use std::time::Duration;

use cachette_core::plugin::{BackendConfig, ErrorKind, StoreBackend};
use cachette_core::registry::{backend_from_url, config_from_url};
use cachette_redis::{AccessTracking, DEFAULT_CHUNK_SIZE, RedisConfig};

#[test]
fn single_server_urls() {
    let c = RedisConfig::from_url(
        "redis://user:pw@cache.internal:6380/3?prefix=team%2Fa&chunk_size=8M&connection_timeout_ms=100&response_timeout_ms=200&default_ttl_secs=60&chunk_grace_secs=10&access_tracking=stored&max_item_size=1G",
    )
    .unwrap();
    assert_eq!(c.urls, ["redis://user:pw@cache.internal:6380/3"]);
    assert!(!c.cluster);
    assert_eq!(c.prefix, "team/a");
    assert_eq!(c.chunk_size, 8 * 1024 * 1024);
    assert_eq!(c.connection_timeout(), Duration::from_millis(100));
    assert_eq!(c.response_timeout(), Duration::from_millis(200));
    assert_eq!(c.default_ttl(), Some(Duration::from_secs(60)));
    assert_eq!(c.chunk_grace(), Duration::from_secs(10));
    assert_eq!(c.access_tracking, AccessTracking::Stored);
    assert_eq!(c.max_item_size, 1 << 30);
    assert_eq!(RedisConfig::from_url(&c.to_url()).unwrap(), c);
    c.validate().unwrap();

    let d = RedisConfig::from_url("redis://127.0.0.1").unwrap();
    assert_eq!(d.prefix, "cachette");
    assert_eq!(d.chunk_size, DEFAULT_CHUNK_SIZE);
    assert_eq!(d.max_item_size, cachette_redis::DEFAULT_MAX_ITEM_SIZE);
    assert_eq!(d.to_url(), "redis://127.0.0.1");
}

#[test]
fn tls_urls_build_without_connecting() {
    let backend = RedisConfig::from_url("rediss://:secret@cache.example.com:6380/0#insecure")
        .unwrap()
        .build_backend()
        .unwrap();
    assert_eq!(backend.scheme(), "redis");
    assert_eq!(
        backend.location(),
        "rediss://:***@cache.example.com:6380/0#insecure"
    );
    let cluster = RedisConfig::from_url("rediss+cluster://a:1,b:2/").unwrap();
    assert_eq!(cluster.urls, ["rediss://a:1/", "rediss://b:2/"]);
    cluster.build_backend().unwrap();
}

#[test]
fn cluster_urls() {
    let c =
        RedisConfig::from_url("redis+cluster://u:p@10.0.0.1:7000,10.0.0.2:7001/?prefix=x").unwrap();
    assert!(c.cluster);
    assert_eq!(
        c.urls,
        ["redis://u:p@10.0.0.1:7000/", "redis://u:p@10.0.0.2:7001/"]
    );
    assert_eq!(c.prefix, "x");
    assert_eq!(
        c.to_url(),
        "redis+cluster://u:p@10.0.0.1:7000,10.0.0.2:7001/?prefix=x"
    );
    assert_eq!(
        c.location(),
        "redis+cluster://u:***@10.0.0.1:7000,10.0.0.2:7001/?prefix=x"
    );
    let backend = c.build_backend().unwrap();
    assert_eq!(backend.location(), c.location());
}

#[test]
fn bad_configurations_are_refused() {
    for (url, why) in [
        ("redis://h/0?prefx=a", "unknown parameter"),
        ("redis://h/0?chunk_size=lots", "chunk_size"),
        ("redis://h/0?chunk_size=1G", "512 MiB"),
        ("redis://h/0?chunk_size=0", "512 MiB"),
        ("redis://h/0?prefix=", "empty"),
        ("redis://h/0?prefix=%7Btag%7D", "hash tags"),
        ("redis://h/0?connection_timeout_ms=0", "timeouts"),
        ("redis://h/0?response_timeout_ms=soon", "whole number"),
        ("redis://h/0?access_tracking=lru", "access_tracking"),
        ("redis://h/0?default_ttl_secs=0", "default_ttl_secs"),
        ("redis://h/0?max_item_size=0", "max_item_size"),
        ("redis://h/0?max_item_size=big", "max_item_size"),
        ("redis+cluster://a:1,,b:2/", "empty node"),
        ("redis://h:notaport/0", "invalid Redis server URL"),
    ] {
        let err = RedisConfig::from_url(url)
            .and_then(|c| c.build_backend())
            .expect_err(url);
        assert_eq!(err.kind(), ErrorKind::ConfigInvalid, "{url}: {err}");
        assert!(err.to_string().contains(why), "{url}: {err}");
    }
    let mut two = RedisConfig::new("redis://a");
    two.urls.push("redis://b".into());
    let err = two.validate().unwrap_err();
    assert!(err.to_string().contains("cluster = true"), "{err}");
    let err = RedisConfig::new("http://h:1").validate().unwrap_err();
    assert!(err.to_string().contains("redis://"), "{err}");
}

#[test]
fn debug_output_hides_passwords() {
    let c = RedisConfig::new("redis://admin:hunter2@h:1/0");
    let shown = format!("{c:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("admin:***@h:1"), "{shown}");
    let backend = c.build_backend().unwrap();
    assert!(!format!("{backend:?}").contains("hunter2"));
    assert!(!backend.location().contains("hunter2"));
}

#[test]
fn registry_resolves_every_scheme() {
    cachette_redis::link();
    for url in [
        "redis://127.0.0.1:6379/0",
        "rediss://127.0.0.1:6379/0",
        "redis+cluster://127.0.0.1:7000,127.0.0.1:7001/",
        "rediss+cluster://127.0.0.1:7000/",
    ] {
        let config = config_from_url(url).expect(url);
        let shown = format!("{config:?}");
        assert!(shown.starts_with("RedisConfig"), "{shown}");
        let backend = backend_from_url(url).expect(url);
        assert_eq!(backend.scheme(), "redis");
    }
}

#[derive(serde::Deserialize, serde::Serialize)]
struct File {
    backend: Box<dyn BackendConfig>,
}

#[test]
fn config_files_round_trip_through_toml() {
    let text = r#"
        [backend]
        type = "redis"
        urls = "redis://127.0.0.1:6379/1"
        prefix = "team-a"
        chunk_size = "8M"
        default_ttl_secs = 3600
        access_tracking = "idletime"
        max_item_size = "2G"
    "#;
    let file: File = toml::from_str(text).unwrap();
    let shown = format!("{:?}", file.backend);
    assert!(
        shown.contains("urls: [\"redis://127.0.0.1:6379/1\"]"),
        "{shown}"
    );
    assert!(shown.contains("chunk_size: 8388608"), "{shown}");
    assert!(shown.contains("IdleTime"), "{shown}");
    let backend = file.backend.build().unwrap();
    assert_eq!(
        backend.location(),
        "redis://127.0.0.1:6379/1?prefix=team-a&chunk_size=8388608&default_ttl_secs=3600&access_tracking=idletime&max_item_size=2147483648"
    );

    let again = toml::to_string(&file).unwrap();
    assert!(again.contains("type = \"redis\""), "{again}");
    let back: File = toml::from_str(&again).unwrap();
    assert_eq!(format!("{:?}", back.backend), shown);
    assert_eq!(format!("{:?}", back.backend.clone()), shown);

    let cluster: File = toml::from_str(
        r#"
        [backend]
        type = "redis"
        urls = ["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"]
        cluster = true
        "#,
    )
    .unwrap();
    assert_eq!(
        cluster.backend.build().unwrap().location(),
        "redis+cluster://10.0.0.1:7000,10.0.0.2:7000"
    );

    let typo = toml::from_str::<File>(
        r#"
        [backend]
        type = "redis"
        urls = "redis://h"
        prefx = "oops"
        "#,
    );
    let err = typo.err().expect("unknown fields are refused").to_string();
    assert!(err.contains("prefx"), "{err}");
}

#[test]
fn builder_methods() {
    let c = RedisConfig::cluster(["redis://a:1", "redis://b:2"])
        .with_prefix("p")
        .with_chunk_size(1 << 20)
        .with_connection_timeout(Duration::from_millis(1500))
        .with_response_timeout(Duration::from_secs(3))
        .with_default_ttl(Some(Duration::from_millis(1500)))
        .with_chunk_grace(Duration::from_secs(30))
        .with_access_tracking(AccessTracking::Auto)
        .with_max_item_size(1 << 20);
    assert_eq!(c.default_ttl_secs, Some(2), "rounded up to whole seconds");
    assert_eq!(c.connection_timeout_ms, 1500);
    assert_eq!(RedisConfig::from_url(&c.to_url()).unwrap(), c);
}
