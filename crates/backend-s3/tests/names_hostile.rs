//! Objects with names object_store refuses (an empty, `.` or `..` segment, a control
//! character), written by a stranger who may write to the bucket: object_store fails a whole
//! page of a listing on one of them, so that every listing and sweep would fail for good.
//! The client drops them from the page; the other names are listed as they are.
//!
//! The server is a thread of this test on 127.0.0.1 that answers ListObjectsV2 requests from
//! a fixed set of names, as S3 does (with `prefix`, `delimiter` and `start-after`), and every
//! other request with 404.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use cachette_core::plugin::{Prefix, StoreBackend as _, block_on};
use cachette_s3::S3Config;

/// The objects of the bucket. The item names are under the prefix `p`.
const OBJECTS: &[&str] = &[
    "p/cachette/f-0123456789abcdef/00ff",
    // Empty segment.
    "p/cachette/f-0123456789abcdef/a//b",
    "p/cachette/f-0123456789abcdef/a/./b",
    "p/cachette/f-0123456789abcdef/a\u{1}b",
    // Valid, and escaped in a page (`&amp;`, `&lt;`).
    "p/cachette/f-0123456789abcdef/R&D<1>",
    // Listed with the delimiter under the log folder, the folder `p/.cachette-access/log//`.
    "p/.cachette-access/log//x",
];

/// The items `list` must give.
const ITEMS: &[&str] = &[
    "cachette/f-0123456789abcdef/00ff",
    "cachette/f-0123456789abcdef/R&D<1>",
];

/// `text` escaped for XML, as S3 escapes names (control characters as character references).
fn escape(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c if c.is_control() => out.push_str(&format!("&#{};", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// The one page of a ListObjectsV2 request with `query`, as S3 gives it.
fn page(query: &str) -> String {
    let mut prefix = String::new();
    let mut delimiter = None;
    let mut start_after = String::new();
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        match name.as_ref() {
            "prefix" => prefix = value.into_owned(),
            "delimiter" => delimiter = Some(value.into_owned()),
            "start-after" => start_after = value.into_owned(),
            _ => {}
        }
    }
    let mut names: Vec<&str> = OBJECTS
        .iter()
        .copied()
        .filter(|name| name.starts_with(&prefix) && *name > start_after.as_str())
        .collect();
    names.sort_unstable();
    let mut contents = String::new();
    let mut folders = BTreeSet::new();
    for name in names {
        let rest = &name[prefix.len()..];
        if let Some(at) = delimiter.as_deref().and_then(|d| rest.find(d)) {
            folders.insert(&name[..prefix.len() + at + 1]);
            continue;
        }
        contents.push_str(&format!(
            "<Contents><Key>{}</Key><LastModified>2026-01-01T00:00:00.000Z</LastModified>\
             <ETag>&quot;0123&quot;</ETag><Size>3</Size><StorageClass>STANDARD</StorageClass>\
             </Contents>",
            escape(name)
        ));
    }
    let folders: String = folders
        .iter()
        .map(|f| {
            format!(
                "<CommonPrefixes><Prefix>{}</Prefix></CommonPrefixes>",
                escape(f)
            )
        })
        .collect();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
         <Name>bucket</Name><Prefix>{}</Prefix><KeyCount>{}</KeyCount><MaxKeys>1000</MaxKeys>\
         <IsTruncated>false</IsTruncated>{contents}{folders}</ListBucketResult>",
        escape(&prefix),
        OBJECTS.len()
    )
}

/// Answers the requests of one connection, recording their targets.
fn answer(stream: TcpStream, seen: Arc<Mutex<Vec<String>>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut stream = stream;
    loop {
        let mut request = String::new();
        if reader.read_line(&mut request)? == 0 {
            return Ok(());
        }
        let mut parts = request.split_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let target = parts.next().unwrap_or_default().to_owned();
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line)?;
            if line.trim().is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        std::io::copy(&mut (&mut reader).take(length), &mut std::io::sink())?;
        seen.lock().unwrap().push(format!("{method} {target}"));
        let query = target.split_once('?').map_or("", |(_, q)| q);
        let (status, body) = if method == "GET" && query.contains("list-type=2") {
            ("200 OK", page(query))
        } else {
            (
                "404 Not Found",
                "<Error><Code>NoSuchKey</Code><Message>none</Message></Error>".to_owned(),
            )
        };
        let body = if method == "HEAD" { "" } else { &body };
        write!(
            stream,
            "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )?;
        stream.flush()?;
    }
}

/// Starts the server; gives its endpoint and the requests it answered.
fn serve() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorded = Arc::clone(&seen);
    // Runs until the test ends.
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let seen = Arc::clone(&recorded);
            std::thread::spawn(move || {
                let _ = answer(stream, seen);
            });
        }
    });
    (endpoint, seen)
}

#[test]
fn names_object_store_refuses_are_skipped_by_list_and_sweep() {
    for concurrency in [1, 16] {
        let (endpoint, seen) = serve();
        let mut config = S3Config::new("bucket")
            .with_endpoint(&endpoint)
            .with_allow_http(true)
            .with_prefix("p");
        config.max_retries = 0;
        config.read_timeout_secs = 10;
        config.list_concurrency = concurrency;
        let backend = config.build_backend().unwrap();
        let (listed, swept) = block_on(false, async move {
            let listed = backend.list(&Prefix::root()).await;
            let swept = backend.sweep(&Prefix::root()).await;
            (listed, swept)
        })
        .unwrap();
        let listed = listed.unwrap_or_else(|e| panic!("list ({concurrency}): {e}"));
        let mut keys: Vec<&str> = listed.iter().map(|item| item.key.as_str()).collect();
        keys.sort_unstable();
        assert_eq!(keys, ITEMS, "{concurrency}");
        assert!(listed.iter().all(|item| item.size == 3));
        let swept = swept.unwrap_or_else(|e| panic!("sweep ({concurrency}): {e}"));
        assert_eq!(swept, 0, "{concurrency}");
        // The server did serve the refused names: the whole store, and the log folder with
        // the delimiter (which gives the folder `log//`).
        let seen = seen.lock().unwrap();
        assert!(
            seen.iter().any(|r| r.contains("list-type=2")
                && r.contains("delimiter=%2F")
                && r.contains("prefix=p%2F.cachette-access%2Flog%2F")),
            "{seen:?}"
        );
        assert!(
            seen.iter().any(|r| r.contains("list-type=2")
                && r.contains("prefix=p%2F")
                && !r.contains("delimiter")
                && !r.contains("cachette-access")),
            "{seen:?}"
        );
    }
}
