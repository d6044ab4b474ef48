//! What the tests against the S3 test server share: the server's address, buckets of their
//! own, and the counting and throttling proxy.

#![allow(dead_code)]

pub(crate) mod paged;
pub(crate) mod proxy;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use cachette_core::plugin::testkit::{self, unique_root};
use cachette_s3::S3Config;

pub(crate) struct Server {
    pub(crate) endpoint: String,
    pub(crate) bucket: String,
}

/// The test server, or `None` to skip (a failure under `CI=true`).
pub(crate) fn server() -> Option<Server> {
    cachette_s3::link();
    let endpoint = testkit::server_from_env("CACHETTE_TEST_S3_ENDPOINT")?;
    let bucket =
        std::env::var("CACHETTE_TEST_S3_BUCKET").unwrap_or_else(|_| "cachette-test".to_owned());
    Some(Server { endpoint, bucket })
}

impl Server {
    /// A configuration of a fresh prefix of the test bucket, through `endpoint` (the server's
    /// own, or a proxy's).
    pub(crate) fn config_via(&self, endpoint: &str, tag: &str) -> S3Config {
        S3Config::new(&self.bucket)
            .with_prefix(unique_root(tag))
            .with_endpoint(endpoint)
            .with_allow_http(true)
    }

    pub(crate) fn config(&self, tag: &str) -> S3Config {
        self.config_via(&self.endpoint, tag)
    }

    /// The URL of a fresh prefix of the test bucket, written by hand, as a user would.
    pub(crate) fn url(&self, tag: &str) -> String {
        format!(
            "s3://{}/{}?endpoint={}&allow_http=true",
            self.bucket,
            unique_root(tag),
            self.endpoint
        )
    }

    /// Creates a bucket of its own on the test server (deleted by [`Bucket`]'s `drop`, once
    /// emptied), so that a test with many objects neither sees nor slows the others.
    pub(crate) fn own_bucket(&self, tag: &str) -> Bucket {
        let name = format!(
            "cachette-{tag}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis()
        );
        let status = raw_request(&self.endpoint, "PUT", &format!("/{name}"));
        assert!(status == 200, "cannot create the bucket {name}: {status}");
        Bucket {
            endpoint: self.endpoint.clone(),
            name,
        }
    }
}

pub(crate) struct Bucket {
    pub(crate) endpoint: String,
    pub(crate) name: String,
}

impl Bucket {
    /// A configuration of a fresh prefix of this bucket, through `endpoint`.
    pub(crate) fn config_via(&self, endpoint: &str, tag: &str) -> S3Config {
        S3Config::new(&self.name)
            .with_prefix(unique_root(tag))
            .with_endpoint(endpoint)
            .with_allow_http(true)
    }
}

impl Drop for Bucket {
    fn drop(&mut self) {
        // Fails (and leaves it) when it still holds objects.
        let _ = raw_request(&self.endpoint, "DELETE", &format!("/{}", self.name));
    }
}

/// An unsigned request without a body to the test server (which does not check signatures);
/// gives the status.
fn raw_request(endpoint: &str, method: &str, path: &str) -> u16 {
    let authority = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = TcpStream::connect(authority).expect("connect to the test server");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// A reporter that keeps the warnings it is given, and those warnings.
pub(crate) fn capture_warnings() -> (
    cachette_core::Reporter,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    let warnings = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = std::sync::Arc::clone(&warnings);
    let reporter = cachette_core::Reporter::new(move |report| {
        if let cachette_core::Report::Warning(w) = report {
            sink.lock().unwrap().push(w.clone());
        }
    });
    (reporter, warnings)
}
