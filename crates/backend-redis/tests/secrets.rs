//! Passwords are never printed: not by `Debug`, `Display` or the location of a configuration or
//! a backend, not in errors (of parsing, of validation, of operations) and not in the warnings
//! of a memory, whatever characters they hold, also when the user did not percent-encode them
//! (`#`, `/`, `@`, `?` in the URL's password).

mod common;

use std::sync::{Arc, Mutex};

use cachette_core::plugin::{Key, StoreBackendExt, testkit};
use cachette_core::{Memory, Reporter};
use cachette_redis::RedisConfig;

/// The two halves of every password below: neither may ever be printed.
const HALVES: [&str; 2] = ["Xyzzy", "Sekr1t"];

/// Passwords with each character that breaks a URL when left as is, and a plain one.
fn passwords() -> Vec<String> {
    ["#", "/", "@", "?", "#/@?", ":", "%"]
        .iter()
        .map(|sep| format!("{}{sep}{}", HALVES[0], HALVES[1]))
        .chain([format!("{}{}", HALVES[0], HALVES[1])])
        .collect()
}

/// The URLs a user may give with a password: single servers, TLS, clusters, with a user name,
/// a database, parameters (one holding an `@`) and a fragment.
fn urls(password: &str) -> Vec<String> {
    vec![
        format!("redis://:{password}@127.0.0.1:6379"),
        format!("redis://:{password}@127.0.0.1:6379/0"),
        format!("redis://admin:{password}@cache.internal:6380/2?prefix=team-a"),
        format!("redis://admin:{password}@cache.internal/2?prefix=a@b&chunk_size=1M"),
        format!("rediss://:{password}@cache.internal:6380/0#insecure"),
        format!("redis+cluster://:{password}@10.0.0.1:7000,10.0.0.2:7001/?prefix=x"),
        format!("rediss+cluster://u:{password}@10.0.0.1:7000,10.0.0.2:7001#insecure"),
        // Not a valid URL whatever the password: the errors must not show it either.
        format!("redis://:{password}@"),
        format!("redis://:{password}@h:notaport/0"),
        format!("redis://:{password}@h/0?prefx=typo"),
        format!("http://:{password}@h:1/0"),
        format!("redis:/:{password}@h:1/0"),
        format!("redis+cluster://:{password}@a:1,,b:2/"),
    ]
}

#[track_caller]
fn assert_hidden(what: &str, shown: &str) {
    for half in HALVES {
        assert!(!shown.contains(half), "{what} shows the password: {shown}");
    }
}

/// Everything an error prints: its message, its `Debug` form and its sources'.
fn printed(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = format!("{err} / {err:?}");
    let mut source = err.source();
    while let Some(e) = source {
        out.push_str(&format!(" / {e} / {e:?}"));
        source = e.source();
    }
    out
}

#[test]
fn configurations_never_print_passwords() {
    for password in passwords() {
        for url in urls(&password) {
            let parsed = RedisConfig::from_url(&url);
            let configs = match &parsed {
                Ok(config) => vec![config.clone(), RedisConfig::new(url.clone())],
                Err(err) => {
                    assert_hidden(&format!("the error parsing {url:?}"), &printed(err));
                    vec![RedisConfig::new(url.clone())]
                }
            };
            for config in configs {
                assert_hidden("Debug", &format!("{config:?}"));
                assert_hidden("Debug", &format!("{config:#?}"));
                assert_hidden("Display", &format!("{config}"));
                assert_hidden("location()", &config.location());
                match config.build_backend() {
                    Ok(backend) => {
                        assert_hidden("the backend's Debug", &format!("{backend:?}"));
                        assert_hidden(
                            "the backend's location",
                            &cachette_core::plugin::StoreBackend::location(&backend),
                        );
                    }
                    Err(err) => {
                        assert_hidden(&format!("the error building {url:?}"), &printed(&err))
                    }
                }
            }
        }
    }
}

/// A password that is not percent-encoded is still the password: the backend connects with it.
#[test]
fn passwords_that_are_not_percent_encoded_work() {
    let Some(bin) = testkit::server_from_env("CACHETTE_TEST_REDIS_SERVER_BIN") else {
        return;
    };
    let password = format!("{}#/@?:{}", HALVES[0], HALVES[1]);
    let server = common::Server::start(&bin, &["--requirepass", &password]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    for url in [
        format!("redis://:{password}@127.0.0.1:{}/0", server.port),
        format!("redis://default:{password}@127.0.0.1:{}", server.port),
        format!("redis://:{password}@127.0.0.1:{}/0?prefix=a@b", server.port),
    ] {
        let backend = RedisConfig::from_url(&url)
            .expect(&url)
            .build_backend()
            .expect(&url);
        let key = Key::new("cachette/f/secret").unwrap();
        rt.block_on(backend.put(&key, b"value".to_vec().into()))
            .expect(&url);
        let got = rt.block_on(backend.get(&key)).expect(&url);
        assert_eq!(got.as_deref(), Some(&b"value"[..]), "{url}");
        // The same URL in a configuration file's `urls`.
        let backend = RedisConfig::new(url.clone()).build_backend().expect(&url);
        let got = rt.block_on(backend.get(&key)).expect(&url);
        assert_eq!(got.as_deref(), Some(&b"value"[..]), "{url}");
    }
}

/// A wrong password meets every command: a memory's calls compute their values, and the user
/// is told once, not once a call.
#[test]
fn a_wrong_password_is_told_once() {
    let Some(bin) = testkit::server_from_env("CACHETTE_TEST_REDIS_SERVER_BIN") else {
        return;
    };
    cachette_redis::link();
    let server = common::Server::start(&bin, &["--requirepass", "the-right-one"]);
    let warnings = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = warnings.clone();
    let memory = Memory::builder()
        .url(format!(
            "redis://:the-wrong-one@127.0.0.1:{}/0?connection_timeout_ms=2000",
            server.port
        ))
        .reporter(Reporter::new(move |r| {
            if let cachette_core::Report::Warning(w) = r {
                sink.lock().unwrap().push(w.clone());
            }
        }))
        .build()
        .unwrap();
    let f = memory.cache(|x: u32| x + 1).name("secrets.told_once");
    for x in 0..12 {
        assert_eq!(f.eval(x % 3), x % 3 + 1);
    }
    testkit::the_warning_of_a_refusing_store(&warnings.lock().unwrap());
}

/// Failed operations (a wrong password, a server that is not there) and the warnings of a
/// memory name the store without its password.
#[test]
fn errors_and_warnings_never_print_passwords() {
    let Some(bin) = testkit::server_from_env("CACHETTE_TEST_REDIS_SERVER_BIN") else {
        return;
    };
    cachette_redis::link();
    let server = common::Server::start(&bin, &["--requirepass", "the-right-one"]);
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let rt = tokio::runtime::Runtime::new().unwrap();
    for password in passwords() {
        for port in [server.port, closed] {
            for url in [
                format!("redis://:{password}@127.0.0.1:{port}/0?connection_timeout_ms=500"),
                format!("redis://admin:{password}@127.0.0.1:{port}?connection_timeout_ms=500"),
            ] {
                let backend = RedisConfig::from_url(&url)
                    .unwrap()
                    .build_backend()
                    .unwrap();
                let key = Key::new("cachette/f/x").unwrap();
                let err = rt.block_on(backend.get(&key)).expect_err(&url);
                assert_hidden(&format!("the error of a read of {url}"), &printed(&err));
                let err = rt
                    .block_on(backend.put(&key, b"v".to_vec().into()))
                    .expect_err(&url);
                assert_hidden(&format!("the error of a write of {url}"), &printed(&err));

                let warnings = Arc::new(Mutex::new(Vec::<String>::new()));
                let sink = warnings.clone();
                let memory = Memory::builder()
                    .url(url.clone())
                    .reporter(Reporter::new(move |r| {
                        sink.lock().unwrap().push(format!("{r:?}"));
                    }))
                    .build()
                    .unwrap();
                assert_hidden("the memory's location", memory.location().unwrap_or(""));
                assert_hidden("the memory's Debug", &format!("{memory:?}"));
                let f = memory.cache(|x: u32| x + 1).name("secrets.f");
                assert_eq!(f.eval(1), 2);
                let shelved = f.call_and_shelve(2);
                assert_hidden("a shelved result", &format!("{shelved:?}"));
                let err = memory.clear().unwrap_err();
                assert_hidden("the error of clear", &printed(&err));
                let warnings = warnings.lock().unwrap();
                assert!(!warnings.is_empty(), "{url}: no warning");
                for w in warnings.iter() {
                    assert_hidden("a warning", w);
                }
            }
        }
    }
}
