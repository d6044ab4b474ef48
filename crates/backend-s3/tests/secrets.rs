//! The secret access key and the session token are never printed: not by `Debug`, not in a
//! location or URL, not in an error, not in a log line (of this crate or of the HTTP stack,
//! captured at the most verbose level). The access key id may be shown.
//!
//! A test binary of its own: it installs a global `tracing` subscriber and `log` logger.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use cachette_core::plugin::{
    BackendConfig, Bytes, DynBackend, Key, Prefix, StoreBackend, StoreBackendExt as _, block_on,
};
use cachette_core::{Memory, Report, Reporter};
use cachette_s3::S3Config;

const KEY_ID: &str = "AKIDCACHETTE0TEST";
const SECRET: &str = "cachetteSecretKey/0123456789+ABCDEFabcdef";
const TOKEN: &str = "cachetteSessionToken0123456789ABCDEFGH";

/// Everything logged in this process, at every level.
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&logs);
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || Capture(Arc::clone(&sink)))
            .init();
        log::set_logger(Box::leak(Box::new(LogCapture(Arc::clone(&logs))))).unwrap();
        log::set_max_level(log::LevelFilter::Trace);
        logs
    })
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl log::Log for LogCapture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        let line = format!(
            "{} {}: {}\n",
            record.level(),
            record.target(),
            record.args()
        );
        self.0.lock().unwrap().extend_from_slice(line.as_bytes());
    }
    fn flush(&self) {}
}

#[track_caller]
fn assert_hidden(what: &str, text: &str) {
    assert!(
        !text.contains(SECRET),
        "{what} shows the secret access key: {text}"
    );
    assert!(
        !text.contains(TOKEN),
        "{what} shows the session token: {text}"
    );
    // Nor a recognisable part of them.
    assert!(
        !text.contains(&SECRET[..16]),
        "{what} shows part of the secret: {text}"
    );
    assert!(
        !text.contains(&TOKEN[..16]),
        "{what} shows part of the token: {text}"
    );
}

/// An error and all its sources, displayed and debugged.
fn error_text(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = format!("{err} / {err:?}");
    let mut source = err.source();
    while let Some(e) = source {
        text.push_str(&format!(" / {e} / {e:?}"));
        source = e.source();
    }
    text
}

fn with_secrets(config: S3Config) -> S3Config {
    let mut config = config.with_credentials(KEY_ID, SECRET);
    config.session_token = Some(TOKEN.to_owned());
    config
}

#[test]
fn urls_and_endpoints_never_echo_credentials() {
    logs();
    cachette_s3::link();
    for url in [
        // Credentials in the authority, with other faults reported after parsing.
        format!("s3://{KEY_ID}:{SECRET}@bucket/p"),
        format!("s3://{KEY_ID}:{SECRET}@bucket:9000/p"),
        format!("gs://{KEY_ID}:{SECRET}@bucket/p"),
        format!("s3://{KEY_ID}:{SECRET}@bucket:notaport/p"),
        // Credentials in the query, with a fault reported before the query is read.
        format!("s3://bucket:9000/p?secret_access_key={SECRET}"),
        format!("s3://bucket/p?secret_access_key={SECRET}#frag"),
        format!("s3:///p?session_token={TOKEN}"),
        format!("s3://bucket/p?access_key_id={KEY_ID}&secret_access_key={SECRET}"),
        format!("s3://bucket/p?session_token={TOKEN}"),
        format!("s3://bucket/p?max_retries=x&secret_access_key={SECRET}"),
        // An endpoint holding credentials.
        format!("s3://bucket/p?endpoint=http://{KEY_ID}:{SECRET}@127.0.0.1:9000&allow_http=true"),
        format!("s3://bucket/p?endpoint=http://{KEY_ID}:{SECRET}@127.0.0.1:9000"),
        format!("s3://bucket/p?endpoint=ftp://{KEY_ID}:{SECRET}@host"),
    ] {
        let err = S3Config::from_url(&url).expect_err(&url);
        assert_hidden(&format!("the error for {url}"), &error_text(&err));
        let err = cachette_core::registry::backend_from_url(&url).expect_err(&url);
        assert_hidden(
            &format!("the registry's error for {url}"),
            &error_text(&err),
        );
    }
    // An endpoint with credentials set in code: refused, and never shown.
    let config = S3Config::new("bucket")
        .with_endpoint(format!("http://{KEY_ID}:{SECRET}@127.0.0.1:9000"))
        .with_allow_http(true);
    assert_hidden("Debug of a configuration", &format!("{config:?}"));
    assert_hidden("its URL", &config.to_url());
    let err = config.build_backend().unwrap_err();
    assert_hidden(
        "the error for an endpoint with credentials",
        &error_text(&err),
    );
    assert!(err.to_string().contains("credentials"), "{err}");
    assert_hidden(
        "the logs",
        &String::from_utf8_lossy(&logs().lock().unwrap()),
    );
}

#[test]
fn a_memory_never_prints_its_credentials() {
    logs();
    let Some(server) = support::server() else {
        return;
    };
    let config = with_secrets(server.config("s3-secrets"));
    let shown = format!("{config:?}");
    assert!(shown.contains(KEY_ID), "the key id may be shown: {shown}");
    assert_hidden("Debug of a configuration", &shown);
    assert_hidden(
        "Debug of a boxed configuration",
        &format!("{:?}", Box::new(config.clone()) as Box<dyn BackendConfig>),
    );
    assert_hidden("its URL", &config.to_url());

    let backend = config.build_backend().unwrap();
    assert_hidden("Debug of the backend", &format!("{backend:?}"));
    assert_hidden("the location", &backend.location());
    let backend: DynBackend = Arc::new(backend);
    let warnings = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&warnings);
    let memory = Memory::builder()
        .backend(backend.clone())
        .reporter(Reporter::new(move |report| {
            if let Report::Line(text) | Report::Warning(text) = report {
                sink.lock().unwrap().push(text.clone());
            }
        }))
        .verbose(10)
        .build()
        .unwrap();
    let f = memory.cache(|x: u64| x * 3).name("secrets.f");
    assert_eq!(f.eval(2), 6);
    assert_eq!(f.eval(2), 6);
    let shelved = f.call_and_shelve(2);
    let result = shelved.as_memorized().expect("stored");
    assert_hidden("a printed MemorizedResult", &result.to_string());
    assert_hidden("a MemorizedResult's Debug", &format!("{result:?}"));
    assert_hidden("Debug of the memory", &format!("{memory:?}"));
    memory
        .reduce_size(&cachette_core::SizeLimits::default().items_limit(10))
        .unwrap();
    memory.clear().unwrap();

    // Failures: a missing bucket, a server that is gone, a server that refuses everything.
    let mut missing = config.clone();
    missing.bucket = "cachette-no-such-bucket".to_owned();
    let proxy = support::proxy::Proxy::start(&server.endpoint);
    proxy.throttle_next(u64::MAX);
    let mut refusing = config.clone();
    refusing.endpoint = Some(proxy.endpoint());
    refusing.max_retries = 1;
    refusing.retry_timeout_secs = 1;
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mut gone = config.clone();
    gone.endpoint = Some(format!("http://127.0.0.1:{port}"));
    gone.max_retries = 1;
    for broken in [missing, refusing, gone] {
        let backend = broken.build_backend().unwrap();
        let errors = block_on(false, async move {
            let key = Key::new("f/x").unwrap();
            vec![
                backend.get(&key).await.unwrap_err(),
                backend
                    .put(&key, Bytes::from_static(b"v").into())
                    .await
                    .unwrap_err(),
                backend.list(&Prefix::root()).await.unwrap_err(),
            ]
        })
        .unwrap();
        for err in errors {
            assert_hidden("an error", &error_text(&err));
        }
        let memory = Memory::builder()
            .backend(Arc::new(broken.build_backend().unwrap()) as DynBackend)
            .build()
            .unwrap();
        assert_eq!(memory.cache(|x: u64| x + 1).eval(1), 2);
        let err = memory.clear().unwrap_err();
        assert_hidden("a memory's error", &error_text(&err));
    }
    std::thread::sleep(Duration::from_millis(100));
    for line in warnings.lock().unwrap().iter() {
        assert_hidden("a report", line);
    }
    let logged = String::from_utf8_lossy(&logs().lock().unwrap()).into_owned();
    assert!(
        !logged.is_empty(),
        "nothing was logged: the capture does not work"
    );
    assert_hidden("the logs", &logged);
    block_on(false, async move {
        backend.delete_prefix(&Prefix::root()).await
    })
    .unwrap()
    .unwrap();
}
