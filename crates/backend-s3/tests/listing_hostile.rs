//! Listings against a store whose answers are hostile, or which anyone may write: continuation
//! tokens that never end a listing, pages that do not move forward, an empty token on the last
//! page, and thousands of one-object folders planted by a stranger. Every listing must end, and
//! cost about what a listing one page after another costs.
//!
//! The hostile servers are threads of this test on 127.0.0.1, answering ListObjectsV2 as the
//! test says; the folders are in an in-memory store that lists in pages as S3 does, and counts
//! its listing requests. Nothing here measures time: a listing that would never end is cut by a
//! guard, and costs are counted in requests.

mod support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use cachette_core::plugin::{
    BackendResult, Bytes, ErrorKind, ItemInfo, Prefix, StoreBackend, block_on,
};
use cachette_s3::object_store::ObjectStoreExt;
use cachette_s3::object_store::path::Path;
use cachette_s3::{S3Backend, S3Config};
use futures::StreamExt;
use support::paged::Paged;

/// The longest a listing of these tests may take before it is taken for one that never ends
/// (a guard against a hang, not a measure: each listing here takes a few requests).
const GUARD: Duration = Duration::from_secs(120);

/// One ListObjectsV2 request, as the server saw it.
struct Request {
    prefix: String,
    delimiter: bool,
    start_after: Option<String>,
    token: Option<String>,
}

/// A server of listings on 127.0.0.1: `answer` gives the body of the answer to each listing;
/// any other request gets a 404. Stops when dropped.
struct Server {
    endpoint: String,
    listings: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Server {
    fn start(answer: impl Fn(&Request) -> String + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let listings = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let answer = Arc::new(answer);
        let (counted, stopped) = (Arc::clone(&listings), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (answer, counted, stopped) = (
                            Arc::clone(&answer),
                            Arc::clone(&counted),
                            Arc::clone(&stopped),
                        );
                        std::thread::spawn(move || serve(stream, &*answer, &counted, &stopped));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Server {
            endpoint,
            listings,
            stop,
        }
    }

    fn backend(&self, concurrency: usize) -> S3Backend {
        let mut config = S3Config::new("bucket")
            .with_endpoint(&self.endpoint)
            .with_allow_http(true);
        config.max_retries = 0;
        config.read_timeout_secs = 10;
        config.list_concurrency = concurrency;
        S3Backend::from_config(&config).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Answers the requests of one connection, one after another.
fn serve(
    stream: TcpStream,
    answer: &(dyn Fn(&Request) -> String + Send + Sync),
    listings: &AtomicUsize,
    stop: &AtomicBool,
) {
    stream
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut out = stream.try_clone().unwrap();
    let mut lines = BufReader::new(stream);
    // A line of the request, waiting for it while the server runs (a line read in part
    // before a timeout is kept, and goes on); `None` when the connection or the server ends.
    let line = |lines: &mut BufReader<TcpStream>| {
        let mut line = String::new();
        loop {
            match lines.read_line(&mut line) {
                Ok(0) => return None,
                Ok(_) => return Some(line),
                Err(_) if stop.load(Ordering::Relaxed) => return None,
                Err(_) => {}
            }
        }
    };
    loop {
        let Some(first) = line(&mut lines) else {
            return;
        };
        // The rest of the head; no request of these tests has a body.
        loop {
            match line(&mut lines) {
                None => return,
                Some(header) if header == "\r\n" => break,
                Some(_) => {}
            }
        }
        let target = first.split(' ').nth(1).unwrap_or("");
        let query = target.split_once('?').map_or("", |(_, q)| q);
        let param = |name: &str| {
            query
                .split('&')
                .filter_map(|pair| pair.split_once('='))
                .find(|(key, _)| *key == name)
                .map(|(_, value)| decode(value))
        };
        let (status, body) = if param("list-type").is_some() {
            listings.fetch_add(1, Ordering::SeqCst);
            let request = Request {
                prefix: param("prefix").unwrap_or_default(),
                delimiter: param("delimiter").is_some(),
                start_after: param("start-after"),
                token: param("continuation-token"),
            };
            ("200 OK", answer(&request))
        } else {
            (
                "404 Not Found",
                "<Error><Code>NoSuchKey</Code></Error>".to_owned(),
            )
        };
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        if out.write_all(head.as_bytes()).is_err() || out.write_all(body.as_bytes()).is_err() {
            return;
        }
    }
}

/// A query's value, percent-decoded.
fn decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

/// A ListObjectsV2 page of `keys` and `folders`, with `token` as its continuation token
/// (written as given, even empty).
fn page(keys: &[&str], folders: &[&str], token: Option<&str>) -> String {
    let mut body = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Name>bucket</Name>",
    );
    body.push_str(&format!(
        "<KeyCount>{}</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>{}</IsTruncated>",
        keys.len() + folders.len(),
        token.is_some_and(|t| !t.is_empty())
    ));
    for key in keys {
        body.push_str(&format!(
            "<Contents><Key>{key}</Key><LastModified>2026-01-01T00:00:00.000Z</LastModified>\
             <ETag>\"e\"</ETag><Size>1</Size><StorageClass>STANDARD</StorageClass></Contents>"
        ));
    }
    for folder in folders {
        body.push_str(&format!(
            "<CommonPrefixes><Prefix>{folder}</Prefix></CommonPrefixes>"
        ));
    }
    if let Some(token) = token {
        body.push_str(&format!(
            "<NextContinuationToken>{token}</NextContinuationToken>"
        ));
    }
    body.push_str("</ListBucketResult>");
    body
}

/// Lists the whole store in a thread of its own, and gives what the listing gave, or `None`
/// if it did not end within the [`GUARD`].
fn list_guarded(backend: S3Backend) -> Option<BackendResult<Vec<ItemInfo>>> {
    guarded(backend, |backend| async move {
        backend.list(&Prefix::root()).await
    })
}

/// Runs `run` on `backend` in a thread of its own, and gives what it gave, or `None` if it did
/// not end within the [`GUARD`].
fn guarded<T: Send + 'static, F: Future<Output = T> + Send + 'static>(
    backend: S3Backend,
    run: impl FnOnce(S3Backend) -> F + Send + 'static,
) -> Option<T> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let done = block_on(false, run(backend)).unwrap();
        let _ = sender.send(done);
    });
    receiver.recv_timeout(GUARD).ok()
}

/// Checks that `err` ends a listing given a token it gave before: not temporary, since a retry
/// would get the same answers.
fn assert_token_given_again(err: &cachette_core::plugin::BackendError) {
    assert_eq!(err.kind(), ErrorKind::Other, "{err}");
    assert!(!err.is_temporary(), "{err}");
    assert!(err.to_string().contains("continuation token"), "{err}");
}

/// A listing whose every page gives the same continuation token would never end: it fails,
/// with an error that is not temporary (a retry would get the same answers), after a few
/// requests.
#[test]
fn a_token_given_again_ends_the_listing_with_an_error() {
    for concurrency in [1, 16] {
        let server = Server::start(|_| page(&["cachette/f/00"], &[], Some("t")));
        let listed = list_guarded(server.backend(concurrency))
            .unwrap_or_else(|| panic!("concurrency {concurrency}: the listing never ends"));
        assert_token_given_again(&listed.expect_err("a listing that never ends"));
        // The listing of the items, and that of the access logs beside it.
        let listings = server.listings.load(Ordering::SeqCst);
        assert!(
            listings < 100,
            "concurrency {concurrency}: {listings} listing requests"
        );
    }
}

/// A server whose listing of the access logs' hour folders (`.cachette-access/log/`, with the
/// delimiter) always gives the same continuation token, and whose other listings are empty:
/// object_store's own listing of them never ended, so neither did a sweep (nor the log part of
/// a listing). Both end, with an error that is not temporary, after a few requests.
#[test]
fn a_token_given_again_by_the_access_log_listing_ends_sweeps_and_listings() {
    for concurrency in [1, 16] {
        let server = Server::start(|request| {
            if request.delimiter && request.prefix.ends_with(".cachette-access/log/") {
                page(&[], &[], Some("same"))
            } else {
                page(&[], &[], None)
            }
        });
        let (swept, listed) = guarded(server.backend(concurrency), |backend| async move {
            let swept = backend.sweep(&Prefix::root()).await;
            (swept, backend.list(&Prefix::root()).await)
        })
        .unwrap_or_else(|| panic!("concurrency {concurrency}: the sweep or listing never ends"));
        assert_token_given_again(&swept.expect_err("a sweep whose log listing never ends"));
        assert_token_given_again(&listed.expect_err("a listing whose log listing never ends"));
        let listings = server.listings.load(Ordering::SeqCst);
        assert!(
            listings < 100,
            "concurrency {concurrency}: {listings} listing requests"
        );
    }
}

/// Pages that each give a new token but the same names (a server that ignores the token): a
/// parallel listing, which relies on key order, sees that they do not move forward.
#[test]
fn pages_that_do_not_move_forward_end_a_parallel_listing_with_an_error() {
    let tokens = AtomicUsize::new(0);
    let server = Server::start(move |_| {
        let token = format!("t{}", tokens.fetch_add(1, Ordering::SeqCst));
        page(&["cachette/f/00"], &[], Some(&token))
    });
    let listed = list_guarded(server.backend(16)).expect("the listing never ends");
    let err = listed.expect_err("a listing that never ends");
    assert_eq!(err.kind(), ErrorKind::Other, "{err}");
    assert!(!err.is_temporary(), "{err}");
    assert!(err.to_string().contains("does not move forward"), "{err}");
    let listings = server.listings.load(Ordering::SeqCst);
    assert!(listings < 100, "{listings} listing requests");
}

/// The keys of the S3-like server of [`an_empty_token_ends_the_listing`].
fn stored() -> Vec<String> {
    let mut keys = Vec::new();
    for i in 0..7u32 {
        keys.push(format!("cachette/f/{:02x}", i * 37));
    }
    for i in 0..3u32 {
        keys.push(format!("cachette/g/{:02x}", i * 91));
    }
    keys.push("cachette/h/func_code".to_owned());
    keys.push("top".to_owned());
    keys.sort();
    keys
}

/// An honest listing in pages of two names, in key order, but whose last page carries an empty
/// `<NextContinuationToken>` (as some S3-compatible servers give it): the listing ends there.
/// An empty token sent back as `continuation-token=` would get the first page again.
fn honest_with_empty_last_token(request: &Request) -> String {
    const PAGE: usize = 2;
    let keys = stored();
    let mut names: Vec<(String, bool)> = Vec::new();
    for key in keys.iter().filter(|k| k.starts_with(&request.prefix)) {
        let rest = &key[request.prefix.len()..];
        let entry = match rest.find('/') {
            Some(slash) if request.delimiter => {
                (key[..request.prefix.len() + slash + 1].to_owned(), true)
            }
            _ => (key.clone(), false),
        };
        if names.last() != Some(&entry) {
            names.push(entry);
        }
    }
    let after = match request.token.as_deref() {
        Some(token) if !token.is_empty() => Some(token.to_owned()),
        _ => request.start_after.clone(),
    };
    names.retain(|(name, _)| after.as_deref().is_none_or(|a| name.as_str() > a));
    let more = names.len() > PAGE;
    names.truncate(PAGE);
    let token = if more {
        names.last().unwrap().0.clone()
    } else {
        String::new()
    };
    let objects: Vec<&str> = names
        .iter()
        .filter(|(_, folder)| !folder)
        .map(|(n, _)| n.as_str())
        .collect();
    let folders: Vec<&str> = names
        .iter()
        .filter(|(_, folder)| *folder)
        .map(|(n, _)| n.as_str())
        .collect();
    page(&objects, &folders, Some(&token))
}

#[test]
fn an_empty_token_ends_the_listing() {
    for concurrency in [1, 16] {
        let server = Server::start(honest_with_empty_last_token);
        let listed = list_guarded(server.backend(concurrency))
            .unwrap_or_else(|| panic!("concurrency {concurrency}: the listing never ends"));
        let items = listed.unwrap_or_else(|e| panic!("concurrency {concurrency}: {e}"));
        let mut keys: Vec<String> = items.iter().map(|i| i.key.to_string()).collect();
        keys.sort();
        assert_eq!(keys, stored(), "concurrency {concurrency}");
    }
}

async fn filled(page: usize, names: &[String]) -> Arc<Paged> {
    let store = Arc::new(Paged::new(page));
    futures::stream::iter(names)
        .for_each_concurrent(64, |name| {
            let store = &store;
            async move {
                store
                    .put(
                        &Path::parse(format!("p/{name}")).unwrap(),
                        Bytes::from_static(b"v").into(),
                    )
                    .await
                    .unwrap();
            }
        })
        .await;
    store
}

/// The keys a listing of `store` gives with `concurrency` requests at once (checking that none
/// comes twice), and the listing requests it took.
async fn listed(store: &Arc<Paged>, concurrency: usize) -> (Vec<String>, usize) {
    let backend = S3Backend::from_paginated_store(store.clone(), "p")
        .unwrap()
        .with_list_concurrency(concurrency)
        .with_access_granularity(None);
    store.requests.store(0, Ordering::SeqCst);
    store.most_in_flight.store(0, Ordering::SeqCst);
    let items = backend.list(&Prefix::root()).await.unwrap();
    let requests = store.requests.load(Ordering::SeqCst);
    let mut keys: Vec<String> = items.iter().map(|i| i.key.to_string()).collect();
    let unique: BTreeSet<&String> = keys.iter().collect();
    if unique.len() != keys.len() {
        let mut seen = BTreeSet::new();
        let twice: Vec<&String> = keys.iter().filter(|k| !seen.insert(*k)).collect();
        panic!(
            "listed twice, concurrency {concurrency}, page {}: {twice:?}",
            store.page
        );
    }
    keys.sort();
    (keys, requests)
}

fn hex(i: u32) -> String {
    format!(
        "{:032x}",
        (i as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)
    )
}

/// A stranger's 2,000 folders of one object each under `cachette/` made a parallel listing cost
/// one request per folder: they cost about what listing them one page after another costs. A
/// large function beside them is still listed with many requests at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_small_folders_cost_about_a_sequential_listing() {
    const FOLDERS: u32 = 2000;
    let junk: Vec<String> = (0..FOLDERS)
        .map(|i| format!("cachette/junk{i:05}/x"))
        .collect();
    let mut function = junk.clone();
    function.extend((0..5000).map(|i| format!("cachette/f-0123456789abcdef/{}", hex(i))));
    for names in [junk, function] {
        let store = filled(1000, &names).await;
        let mut expected = names.clone();
        expected.sort();
        let (keys, sequential) = listed(&store, 1).await;
        assert_eq!(keys, expected);
        // The pages of the items, and the one of the access logs' hour folders.
        assert_eq!(sequential, names.len().div_ceil(1000) + 1);
        let (keys, parallel) = listed(&store, 16).await;
        assert_eq!(keys, expected);
        // The first pages of the prefix and of `cachette/`, the folders of both (with the
        // delimiter), and then the folders as ranges: a few times the sequential listing,
        // and the cuts of a large function (19 ranges), never one request per folder.
        assert!(
            parallel <= 3 * sequential + 24,
            "{parallel} requests in parallel, {sequential} one after another"
        );
        if names.len() > 5000 {
            let most = store.most_in_flight.load(Ordering::SeqCst);
            assert!(most > 4, "{most} requests at once at most");
        }
    }
}

/// Names around the folders of one level, for the ranges of folders: folders of every size,
/// the parent's own objects between them, names that sort next to a folder's (`a!`, `a-b/`,
/// `a.c/`, `a0`), nested folders.
fn around_folders() -> Vec<String> {
    let mut names = Vec::new();
    for f in 0..40u32 {
        for i in 0..(f % 7) * (f % 5) {
            names.push(format!("cachette/fn{f:02}/{}", hex(f * 100 + i)));
        }
        names.push(format!("cachette/fn{f:02}/func_code"));
        if f % 6 == 0 {
            names.push(format!("cachette/fn{f:02}"));
            names.push(format!("cachette/fn{f:02}!"));
            names.push(format!("cachette/fn{f:02}0"));
        }
    }
    for odd in [
        "a",
        "a!",
        "a-b/x",
        "a-b/y",
        "a.c/z",
        "a/1",
        "a/2",
        "a/3",
        "a0",
        "b/deeper/x",
        "b/deeper/y",
        "b/z",
        "~/x",
    ] {
        names.push(format!("cachette/{odd}"));
    }
    for i in 0..30 {
        names.push(format!("cachette/big/{}", hex(5000 + i)));
    }
    names.push("top".to_owned());
    names.push("z/1".to_owned());
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ranges_of_folders_list_each_object_exactly_once() {
    let mut expected = around_folders();
    expected.sort();
    for page in [1, 2, 3, 7, 40] {
        let store = filled(page, &around_folders()).await;
        let (_, sequential) = listed(&store, 1).await;
        for concurrency in [1, 2, 16, 17] {
            let (keys, requests) = listed(&store, concurrency).await;
            let missing: Vec<&String> = expected.iter().filter(|k| !keys.contains(k)).collect();
            let extra: Vec<&String> = keys.iter().filter(|k| !expected.contains(k)).collect();
            assert!(
                missing.is_empty() && extra.is_empty(),
                "page {page}, concurrency {concurrency}: missing {missing:?}, extra {extra:?}"
            );
            // The listing of the items, and beside it the one of the access logs' folders.
            assert!(
                store.most_in_flight.load(Ordering::SeqCst) <= concurrency + 1,
                "more than {concurrency} requests at once, and one of the access logs"
            );
            assert!(
                requests <= 4 * sequential + 200,
                "page {page}, concurrency {concurrency}: {requests} requests, {sequential} \
                 one after another"
            );
        }
    }
}
