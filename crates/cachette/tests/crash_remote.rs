//! Crash safety on S3 and Redis, against the test servers: a writer killed with SIGKILL at
//! random moments during a 256 MiB persist never leaves a partial entry visible, and
//! housekeeping removes what it can of what the writer left.
//!
//! As on the local disk (`crash.rs`), the test re-runs its own binary as the child writer (see
//! `common/crash.rs`), 20 times per backend.
//!
//! - **S3** uploads a 256 MiB entry as a multipart upload (16 parts of 16 MiB by default), which
//!   becomes an object only when it completes. A killed writer leaves an unfinished upload: its
//!   parts are stored (and billed) but no object is visible. object_store cannot list
//!   unfinished uploads, so housekeeping cannot abort them (a bucket lifecycle rule does); the
//!   test lists them with a plain `ListMultipartUploads` request to tell the kills that landed
//!   mid-upload, and aborts them itself.
//! - **Redis** writes a 256 MiB entry as 64 chunks of 4 MiB, then publishes its manifest. A
//!   killed writer leaves chunks that no manifest names; housekeeping deletes them at once
//!   (they name a process of this host that is gone), and keeps every entry.

#[path = "common/crash.rs"]
mod crash;

mod s3 {
    //! Unfinished multipart uploads, which object_store neither lists nor finds.

    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    use cachette::s3::object_store::aws::{AmazonS3, AmazonS3Builder};
    use cachette::s3::object_store::multipart::MultipartStore;
    use cachette::s3::object_store::path::Path;

    /// The unfinished multipart uploads under a prefix of a bucket.
    pub(crate) struct Uploads {
        endpoint: String,
        bucket: String,
        prefix: String,
        store: AmazonS3,
    }

    impl Uploads {
        pub(crate) fn new(endpoint: &str, bucket: &str, prefix: &str) -> Uploads {
            let store = AmazonS3Builder::new()
                .with_endpoint(endpoint)
                .with_bucket_name(bucket)
                .with_region("us-east-1")
                .with_allow_http(true)
                .with_access_key_id("cachette-test")
                .with_secret_access_key("cachette-test")
                .build()
                .unwrap();
            Uploads {
                endpoint: endpoint.trim_end_matches('/').to_owned(),
                bucket: bucket.to_owned(),
                prefix: prefix.to_owned(),
                store,
            }
        }

        /// The unfinished uploads, as (object path, upload id), from an unsigned
        /// `ListMultipartUploads` over plain HTTP, which moto answers; `None` when the server
        /// does not.
        pub(crate) fn list(&self) -> Option<Vec<(String, String)>> {
            let authority = self.endpoint.strip_prefix("http://")?;
            let mut stream = TcpStream::connect(authority).ok()?;
            stream
                .set_read_timeout(Some(Duration::from_secs(30)))
                .ok()?;
            // HTTP/1.0: the answer is not chunked, and ends when the server closes.
            write!(
                stream,
                "GET /{}?uploads&prefix={}/ HTTP/1.0\r\nHost: {authority}\r\n\r\n",
                self.bucket, self.prefix
            )
            .ok()?;
            let mut answer = String::new();
            stream.read_to_string(&mut answer).ok()?;
            let (head, body) = answer.split_once("\r\n\r\n")?;
            if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
                return None;
            }
            let field = |upload: &str, tag: &str| {
                let start = upload.find(&format!("<{tag}>"))? + tag.len() + 2;
                let end = upload.find(&format!("</{tag}>"))?;
                Some(upload.get(start..end)?.to_owned())
            };
            Some(
                body.split("<Upload>")
                    .skip(1)
                    .filter_map(|u| Some((field(u, "Key")?, field(u, "UploadId")?)))
                    .collect(),
            )
        }

        /// The objects under the prefix (for messages).
        pub(crate) fn objects(&self) -> Vec<String> {
            use cachette::s3::object_store::ObjectStore;
            use futures::TryStreamExt;
            let prefix = Path::from(self.prefix.as_str());
            runtime().block_on(async {
                self.store
                    .list(Some(&prefix))
                    .map_ok(|meta| format!("{} ({} bytes)", meta.location, meta.size))
                    .try_collect()
                    .await
                    .unwrap()
            })
        }

        /// Aborts unfinished uploads, which frees their parts.
        pub(crate) fn abort(&self, uploads: &[(String, String)]) {
            runtime().block_on(async {
                for (path, id) in uploads {
                    // One that completed since it was listed is gone.
                    let _ = self
                        .store
                        .abort_multipart(&Path::from(path.as_str()), id)
                        .await;
                }
            });
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }
}

/// Runs `cleanup` when dropped, also when the test fails.
struct Cleanup<F: FnMut()>(F);

impl<F: FnMut()> Drop for Cleanup<F> {
    fn drop(&mut self) {
        (self.0)();
    }
}

#[test]
fn s3_a_writer_killed_mid_persist_leaves_no_partial_entry() {
    crash::child_if_asked();
    let Some(endpoint) = cachette::plugin::testkit::server_from_env("CACHETTE_TEST_S3_ENDPOINT")
    else {
        return;
    };
    let bucket =
        std::env::var("CACHETTE_TEST_S3_BUCKET").unwrap_or_else(|_| "cachette-test".to_owned());
    let prefix = cachette::plugin::testkit::unique_root("crash-s3");
    let url = format!("s3://{bucket}/{prefix}?endpoint={endpoint}&allow_http=true");
    let reader = crash::Reader::new(&url).only_changed();
    let uploads = s3::Uploads::new(&endpoint, &bucket, &prefix);
    assert_eq!(
        reader
            .memory()
            .housekeeping()
            .expect("the S3 test server answers"),
        0
    );
    let _cleanup = Cleanup(|| {
        let _ = reader.memory().clear();
        if let Some(left) = uploads.list() {
            uploads.abort(&left);
        }
    });

    let observable = uploads.list().is_some();
    let mut unfinished = 0;
    let summary = crash::kill_loop(
        "s3_a_writer_killed_mid_persist_leaves_no_partial_entry",
        &url,
        |kill| {
            // Every read gets the whole entry or a miss.
            let before = reader.check(kill.round);
            // Housekeeping keeps every entry, and every object is an entry (or the function's
            // code). An upload whose completion the server received before the kill may still
            // become an object meanwhile, whole: hence the entries are looked at after the
            // listing.
            let items = reader.memory().housekeeping().unwrap();
            let after = reader.cached();
            assert!(
                before.iter().all(|s| after.contains(s)),
                "round {}: {before:?}, then {after:?}",
                kill.round
            );
            assert!(
                items <= after.len(),
                "round {}: {after:?} of {:?}",
                kill.round,
                uploads.objects()
            );
            // Every upload still open is the killed writer's (the earlier ones were aborted).
            // Housekeeping cannot see it: abort it here, so that the server does not keep up
            // to 256 MiB of parts per round.
            let left = uploads.list().unwrap_or_default();
            if !left.is_empty() {
                unfinished += 1;
            }
            uploads.abort(&left);
        },
    );
    let kept = reader.check(crash::KILLS);
    assert_eq!(uploads.list().unwrap_or_default(), Vec::new());
    println!(
        "S3: {}; {} left an unfinished multipart upload{}; entries kept: {kept:?}",
        summary.line(),
        unfinished,
        if observable {
            ""
        } else {
            " (the server does not list them unsigned: not observed)"
        }
    );
    assert!(summary.persists.len() >= crash::KILLS);
    if observable {
        assert!(unfinished > 0, "no kill landed during an upload");
    } else {
        assert!(summary.mid_persist() > 0, "no kill landed during a persist");
    }
    assert!(!kept.is_empty(), "no entry was ever complete");
}

/// The chunks under the namespace `ns` that no manifest names, with the process id in their
/// write id.
fn orphan_chunks(raw: &mut redis::Connection, ns: &str) -> Vec<(String, Option<u32>)> {
    let chunks = scan(raw, &format!("{{{ns}:*}}:c:*"));
    let mut out = Vec::new();
    for chunk in chunks {
        // `{<data key>}:c:<write id>:<n>`, the write id being `<tag>-<pid>-<random>`.
        let (data, rest) = chunk[1..].split_once("}:c:").unwrap();
        let (id, _) = rest.rsplit_once(':').unwrap();
        let manifest: Option<String> = redis::cmd("HGET")
            .arg(data)
            .arg("w")
            .query(raw)
            .ok()
            .flatten();
        if manifest.as_deref() != Some(id) {
            let pid = id.split('-').nth(1).and_then(|p| p.parse().ok());
            out.push((chunk.clone(), pid));
        }
    }
    out
}

/// Every Redis key of the namespace `ns`.
fn keys_of(raw: &mut redis::Connection, ns: &str) -> Vec<String> {
    scan(raw, &format!("*{ns}*"))
}

/// The Redis keys matching `pattern`.
fn scan(raw: &mut redis::Connection, pattern: &str) -> Vec<String> {
    redis::cmd("SCAN")
        .cursor_arg(0)
        .arg("MATCH")
        .arg(pattern)
        .arg("COUNT")
        .arg(1000)
        .clone()
        .iter(raw)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn redis_a_writer_killed_mid_persist_leaves_no_partial_entry() {
    crash::child_if_asked();
    let Some(server) = cachette::plugin::testkit::server_from_env("CACHETTE_TEST_REDIS_URL") else {
        return;
    };
    let ns = cachette::plugin::testkit::unique_root("crash-redis");
    let url = format!("{server}?prefix={ns}");
    let reader = crash::Reader::new(&url);
    let mut raw = redis::Client::open(server.as_str())
        .unwrap()
        .get_connection()
        .expect("the Redis test server answers");
    let mut cleanup_raw = redis::Client::open(server.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let (memory, namespace) = (reader.memory(), ns.as_str());
    let _cleanup = Cleanup(move || {
        let _ = memory.clear();
        for key in keys_of(&mut cleanup_raw, namespace) {
            let _ = redis::cmd("UNLINK").arg(key).query::<()>(&mut cleanup_raw);
        }
    });

    let (mut with_orphans, mut unfinished_chunks, mut replaced_chunks) = (0, 0, 0);
    let summary = crash::kill_loop(
        "redis_a_writer_killed_mid_persist_leaves_no_partial_entry",
        &url,
        |kill| {
            // The killed writer's chunks are those of its unfinished write; the others are the
            // chunks of the entries it replaced, left to their readers for a grace period.
            let orphans = orphan_chunks(&mut raw, &ns);
            let killed = orphans
                .iter()
                .filter(|(_, pid)| *pid == Some(kill.pid))
                .count();
            if killed > 0 {
                with_orphans += 1;
            }
            unfinished_chunks += killed;
            replaced_chunks += orphans.len() - killed;
            // Every read gets the whole entry or a miss.
            let cached = reader.check(kill.round);
            // Housekeeping deletes every chunk no manifest names, and keeps every entry (it
            // counts entries, not the function's identity item).
            let items = reader.memory().housekeeping().unwrap();
            assert_eq!(items, cached.len(), "round {}", kill.round);
            let left = orphan_chunks(&mut raw, &ns);
            assert!(left.is_empty(), "round {}: left {left:?}", kill.round);
            assert_eq!(reader.check(kill.round), cached, "round {}", kill.round);
        },
    );
    let kept = reader.check(crash::KILLS);
    println!(
        "Redis: {}; {with_orphans} left chunks of an unfinished write; housekeeping deleted {unfinished_chunks} chunks of unfinished writes and {replaced_chunks} of replaced entries; entries kept: {kept:?}",
        summary.line()
    );
    assert!(summary.persists.len() >= crash::KILLS);
    assert!(with_orphans > 0, "no kill landed during a write");
    assert!(!kept.is_empty(), "no entry was ever complete");
    // Clearing leaves nothing of the namespace.
    reader.memory().clear().unwrap();
    assert_eq!(keys_of(&mut raw, &ns), Vec::<String>::new());
}
