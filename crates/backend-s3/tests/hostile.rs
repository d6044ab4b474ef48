//! A server that answers like S3 but is hostile: the size an answer announces and the length of
//! an error's body are the server's word, and neither may crash the client or fill its memory.
//! The server is a thread of this test on 127.0.0.1, which answers every request alike.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cachette_core::plugin::{Key, Prefix, StoreBackend as _, StoreBackendExt as _, block_on};
use cachette_s3::S3Config;

/// The longest a server of these tests waits for its client.
const PATIENCE: Duration = Duration::from_secs(20);

/// A server that answers the first request it gets with `answer`, and the number of bytes it
/// managed to write.
fn serve(
    answer: impl FnOnce(&mut dyn Write) -> std::io::Result<()> + Send + 'static,
) -> (String, Arc<AtomicU64>, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let written = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&written);
    let server = std::thread::spawn(move || {
        listener.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + PATIENCE;
        let mut stream = loop {
            match listener.accept() {
                Ok((stream, _)) => break stream,
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => panic!("no request came: {e}"),
            }
        };
        stream.set_nonblocking(false).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        stream.set_write_timeout(Some(PATIENCE)).unwrap();
        // The request's head; no request of these tests has a body.
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && head.len() < 64 << 10 {
            match stream.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                _ => break,
            }
        }
        // The client may hang up at any time: that is what one test wants.
        let _ = answer(&mut Counting(&mut stream, &counted));
    });
    (endpoint, written, server)
}

/// A stream that counts the bytes written to it.
struct Counting<'a>(&'a mut TcpStream, &'a AtomicU64);

impl Write for Counting<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.0.write(buf)?;
        self.1.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// Writes `head`, then `fill` up to `len` bytes of body (of which `head` gave the start).
fn long_answer(stream: &mut dyn Write, head: &str, fill: u8, len: u64) -> std::io::Result<()> {
    stream.write_all(head.as_bytes())?;
    let chunk = [fill; 64 << 10];
    let mut sent = 0;
    while sent < len {
        let n = chunk
            .len()
            .min(usize::try_from(len - sent).unwrap_or(usize::MAX));
        stream.write_all(&chunk[..n])?;
        sent += n as u64;
    }
    Ok(())
}

fn config(endpoint: &str) -> S3Config {
    let mut config = S3Config::new("bucket")
        .with_endpoint(endpoint)
        .with_allow_http(true);
    config.max_retries = 0;
    config.read_timeout_secs = 10;
    config
}

#[test]
fn an_announced_size_larger_than_memory_is_refused_before_it_is_read() {
    // 2^63 bytes announced, two small pieces sent, then the connection closes: the client must
    // neither reserve the announced size (which cannot be) nor hand out what came. The same
    // for a whole read and for a range that the answer clamps to that size.
    const SIZE: u64 = 1 << 63;
    for ranged in [false, true] {
        let (endpoint, _, server) = serve(move |stream| {
            let status = if ranged {
                format!(
                    "206 Partial Content\r\nContent-Range: bytes 0-{}/{SIZE}",
                    SIZE - 1
                )
            } else {
                "200 OK".to_owned()
            };
            stream.write_all(
                format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {SIZE}\r\nETag: \"e\"\r\n\
                     Last-Modified: Tue, 01 Dec 2026 00:00:00 GMT\r\n\r\n"
                )
                .as_bytes(),
            )?;
            for _ in 0..2 {
                stream.write_all(&[b'x'; 16])?;
                stream.flush()?;
                std::thread::sleep(Duration::from_millis(100));
            }
            Ok(())
        });
        let backend = config(&endpoint).build_backend().unwrap();
        let key = Key::new("f/x").unwrap();
        let read = block_on(false, async move {
            if ranged {
                backend.get_range(&key, 0..u64::MAX).await
            } else {
                backend.get(&key).await
            }
        })
        .unwrap();
        let err = read.expect_err("an answer of 2^63 bytes");
        assert!(err.to_string().contains("into memory"), "{ranged}: {err}");
        server.join().unwrap();
    }
}

#[test]
fn an_error_is_read_only_so_far() {
    // A refusal whose body goes on for 256 MiB: the client reads the start of it, gives its
    // error, and hangs up.
    const BODY: u64 = 256 << 20;
    let (endpoint, written, server) = serve(|stream| {
        let head = format!(
            "HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\n\
                 Content-Length: {BODY}\r\n\r\n<Error><Code>AccessDenied</Code><Message>"
        );
        long_answer(stream, &head, b'x', BODY)
    });
    let backend = config(&endpoint).build_backend().unwrap();
    let key = Key::new("f/x").unwrap();
    let read = block_on(false, async move { backend.get(&key).await }).unwrap();
    let err = read.expect_err("a refusal");
    assert!(err.to_string().contains("AccessDenied"), "{err}");
    server.join().unwrap();
    let written = written.load(Ordering::Relaxed);
    assert!(
        written < 32 << 20,
        "the client read {written} bytes of an error's body"
    );
}

#[test]
fn a_listing_longer_than_any_honest_one_is_refused() {
    // A page of a listing that goes on for 256 MiB: an honest one is a few MiB at most.
    const BODY: u64 = 256 << 20;
    let (endpoint, written, server) = serve(|stream| {
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\n\
                 Content-Length: {BODY}\r\n\r\n<ListBucketResult><Name>bucket</Name>"
        );
        long_answer(stream, &head, b' ', BODY)
    });
    let backend = config(&endpoint).build_backend().unwrap();
    let listed = block_on(false, async move { backend.list(&Prefix::root()).await }).unwrap();
    let err = listed.expect_err("a refused listing");
    assert!(err.to_string().contains("longer than"), "{err}");
    server.join().unwrap();
    let written = written.load(Ordering::Relaxed);
    assert!(
        written < 64 << 20,
        "the client read {written} bytes of a listing's page"
    );
}

#[test]
fn an_answer_of_another_length_than_it_announces_is_an_error() {
    // `Content-Length` with a chunked body, which the client reads as chunks: 50 and 150 bytes
    // where 100 are announced.
    for sent in [50, 150] {
        let (endpoint, _, server) = serve(move |stream| {
            let body = "x".repeat(sent);
            stream.write_all(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\
                     ETag: \"e\"\r\nLast-Modified: Tue, 01 Dec 2026 00:00:00 GMT\r\n\r\n\
                     {sent:x}\r\n{body}\r\n0\r\n\r\n"
                )
                .as_bytes(),
            )
        });
        let backend = config(&endpoint).build_backend().unwrap();
        let key = Key::new("f/x").unwrap();
        let read = block_on(false, async move { backend.get(&key).await }).unwrap();
        let err = read.expect_err("an answer of another length");
        assert!(
            err.to_string().contains("announced 100 bytes"),
            "{sent}: {err}"
        );
        server.join().unwrap();
    }
}
