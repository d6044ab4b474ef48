//! A small HTTP/1.1 proxy on 127.0.0.1, in front of the S3 test server: it counts the requests
//! that go over the wire (what S3 bills), by kind, and can answer the next N requests with
//! `503 SlowDown`, as S3 does when a prefix gets more requests than it serves.
//!
//! Plain `std` sockets and threads: one thread accepts, one thread serves each connection
//! (at most [`MAX_CONNECTIONS`] at once), forwarding each request as received and each answer
//! as received. Lengths are bounded.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Connections served at once, at most; more wait to be accepted.
const MAX_CONNECTIONS: usize = 128;
/// The longest request or answer head.
const MAX_HEAD: usize = 64 << 10;
/// The longest body.
const MAX_BODY: u64 = 256 << 20;

const SLOW_DOWN: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message><RequestId>cachette-test-proxy</RequestId></Error>";

/// One request seen: its kind and its path (without the query).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Seen {
    pub(crate) kind: &'static str,
    pub(crate) path: String,
    /// Answered by the proxy with `503 SlowDown`, not forwarded.
    pub(crate) throttled: bool,
}

#[derive(Default)]
struct State {
    seen: Mutex<Vec<Seen>>,
    /// Requests still to answer with `503 SlowDown`.
    throttle: AtomicU64,
    connections: AtomicUsize,
}

pub(crate) struct Proxy {
    addr: SocketAddr,
    state: Arc<State>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    /// Starts a proxy to `upstream` (`http://127.0.0.1:port`).
    pub(crate) fn start(upstream: &str) -> Proxy {
        let authority = upstream
            .strip_prefix("http://")
            .expect("an http:// upstream")
            .trim_end_matches('/');
        let upstream: SocketAddr = authority
            .to_socket_addrs()
            .expect("upstream address")
            .next()
            .expect("upstream address");
        assert!(
            upstream.ip().is_loopback(),
            "the proxy only forwards to loopback"
        );
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (Arc::clone(&state), Arc::clone(&stop));
        std::thread::Builder::new()
            .name("s3-test-proxy".into())
            .spawn(move || accept(listener, upstream, st, sp))
            .unwrap();
        Proxy { addr, state, stop }
    }

    /// The endpoint to give the S3 client.
    pub(crate) fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answers the next `n` requests with `503 SlowDown`.
    pub(crate) fn throttle_next(&self, n: u64) {
        self.state.throttle.store(n, Ordering::SeqCst);
    }

    /// Every request seen since the last [`take`](Self::take).
    pub(crate) fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.state.seen.lock().unwrap())
    }

    /// Requests seen since the last [`take`](Self::take), by kind (throttled ones under
    /// `503`), and forgets them.
    pub(crate) fn take_counts(&self) -> BTreeMap<&'static str, u64> {
        counts(&self.take())
    }
}

/// Requests by kind (throttled ones under `503`).
pub(crate) fn counts(seen: &[Seen]) -> BTreeMap<&'static str, u64> {
    let mut counts = BTreeMap::new();
    for s in seen {
        *counts
            .entry(if s.throttled { "503" } else { s.kind })
            .or_insert(0) += 1;
    }
    counts
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accepting thread.
        let _ = TcpStream::connect(self.addr);
    }
}

fn accept(listener: TcpListener, upstream: SocketAddr, state: Arc<State>, stop: Arc<AtomicBool>) {
    for client in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        while state.connections.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
            std::thread::sleep(Duration::from_millis(1));
        }
        state.connections.fetch_add(1, Ordering::SeqCst);
        let state = Arc::clone(&state);
        let spawned = std::thread::Builder::new()
            .name("s3-test-proxy-conn".into())
            .spawn({
                let state = Arc::clone(&state);
                move || {
                    let _ = serve(client, upstream, &state);
                    state.connections.fetch_sub(1, Ordering::SeqCst);
                }
            });
        if spawned.is_err() {
            state.connections.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// A request or an answer: its raw bytes, its first line and headers (names lowercase).
struct Message {
    raw: Vec<u8>,
    first_line: String,
    headers: Vec<(String, String)>,
}

impl Message {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn invalid(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_owned())
}

/// Reads one message; `None` at the end of the stream before any byte. `no_body` is set for
/// answers to `HEAD`.
fn read_message(
    r: &mut BufReader<TcpStream>,
    is_request: bool,
    no_body: bool,
) -> io::Result<Option<Message>> {
    let mut raw = Vec::new();
    loop {
        let before = raw.len();
        let n = r
            .by_ref()
            .take((MAX_HEAD - raw.len()) as u64 + 1)
            .read_until(b'\n', &mut raw)?;
        if n == 0 {
            return if raw.is_empty() {
                Ok(None)
            } else {
                Err(invalid("truncated head"))
            };
        }
        if raw.len() > MAX_HEAD {
            return Err(invalid("head too long"));
        }
        if &raw[before..] == b"\r\n" || &raw[before..] == b"\n" {
            break;
        }
    }
    let head = String::from_utf8_lossy(&raw).into_owned();
    let mut lines = head.lines();
    let first_line = lines.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut message = Message {
        raw,
        first_line,
        headers,
    };
    let status: u16 = if is_request {
        0
    } else {
        message
            .first_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    };
    if no_body || status == 204 || status == 304 || (100..200).contains(&status) {
        return Ok(Some(message));
    }
    let chunked = message
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        let mut total = 0u64;
        loop {
            let start = message.raw.len();
            r.by_ref().take(1024).read_until(b'\n', &mut message.raw)?;
            let line = String::from_utf8_lossy(&message.raw[start..])
                .trim()
                .to_owned();
            let size = u64::from_str_radix(line.split(';').next().unwrap_or(""), 16)
                .map_err(|_| invalid("bad chunk size"))?;
            total += size;
            if total > MAX_BODY {
                return Err(invalid("body too long"));
            }
            if size == 0 {
                // Trailers, up to an empty line.
                loop {
                    let start = message.raw.len();
                    let n = r
                        .by_ref()
                        .take(MAX_HEAD as u64)
                        .read_until(b'\n', &mut message.raw)?;
                    if n == 0 || &message.raw[start..] == b"\r\n" {
                        return Ok(Some(message));
                    }
                }
            }
            let mut chunk = vec![0; size as usize + 2];
            r.read_exact(&mut chunk)?;
            message.raw.extend_from_slice(&chunk);
        }
    }
    match message.header("content-length") {
        Some(len) => {
            let len: u64 = len.parse().map_err(|_| invalid("bad content-length"))?;
            if len > MAX_BODY {
                return Err(invalid("body too long"));
            }
            let mut body = vec![0; len as usize];
            r.read_exact(&mut body)?;
            message.raw.extend_from_slice(&body);
        }
        None if !is_request => {
            // Until the end of the stream.
            r.by_ref().take(MAX_BODY).read_to_end(&mut message.raw)?;
        }
        None => {}
    }
    Ok(Some(message))
}

/// The kind of an S3 request, by method, query and headers.
fn kind(request: &Message) -> (&'static str, String) {
    let mut parts = request.first_line.split_whitespace();
    let method = parts.next().unwrap_or_default();
    let target = parts.next().unwrap_or_default();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let has = |name: &str| {
        query
            .split('&')
            .any(|p| p.split_once('=').map_or(p, |(n, _)| n) == name)
    };
    let kind = match method {
        "GET" if has("list-type") => "LIST",
        "GET" if has("uploads") => "LIST uploads",
        "GET" if request.header("range").is_some() => "GET range",
        "GET" => "GET",
        "HEAD" => "HEAD",
        "PUT" if has("partNumber") => "PUT part",
        "PUT" if request.header("if-none-match").is_some() => "PUT if-absent",
        "PUT" => "PUT",
        "POST" if has("delete") => "DELETE batch",
        "POST" if has("uploads") => "multipart start",
        "POST" if has("uploadId") => "multipart complete",
        "DELETE" if has("uploadId") => "multipart abort",
        "DELETE" => "DELETE",
        _ => "other",
    };
    (kind, path.to_owned())
}

fn keeps_alive(message: &Message) -> bool {
    let connection = message.header("connection").map(str::to_ascii_lowercase);
    if message.first_line.starts_with("HTTP/1.0") {
        connection.as_deref() == Some("keep-alive")
    } else {
        connection.as_deref() != Some("close")
    }
}

fn serve(client: TcpStream, upstream: SocketAddr, state: &State) -> io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut to_client = client.try_clone()?;
    let mut from_client = BufReader::new(client);
    let mut up: Option<(TcpStream, BufReader<TcpStream>)> = None;
    while let Some(request) = read_message(&mut from_client, true, false)? {
        let (kind, path) = kind(&request);
        let throttled = state
            .throttle
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        state.seen.lock().unwrap().push(Seen {
            kind,
            path,
            throttled,
        });
        if throttled {
            let answer = format!(
                "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nx-amz-request-id: cachette-test-proxy\r\n\r\n{SLOW_DOWN}",
                SLOW_DOWN.len()
            );
            to_client.write_all(answer.as_bytes())?;
            continue;
        }
        if up.is_none() {
            let stream = TcpStream::connect(upstream)?;
            stream.set_read_timeout(Some(Duration::from_secs(120)))?;
            up = Some((stream.try_clone()?, BufReader::new(stream)));
        }
        let (to_up, from_up) = up.as_mut().unwrap();
        to_up.write_all(&request.raw)?;
        let is_head = request.first_line.starts_with("HEAD ");
        let answer = read_message(from_up, false, is_head)?.ok_or_else(|| invalid("no answer"))?;
        to_client.write_all(&answer.raw)?;
        if !keeps_alive(&answer)
            && let Some((s, _)) = up.take()
        {
            let _ = s.shutdown(Shutdown::Both);
        }
        if !keeps_alive(&request) {
            break;
        }
    }
    Ok(())
}
