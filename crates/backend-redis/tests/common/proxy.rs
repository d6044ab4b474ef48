//! A small Redis proxy on loopback, for tests: it forwards each command of its clients to a
//! real server, one at a time, counts them by name, and can answer the next commands with an
//! error reply of its choosing instead (`-BUSY …`, `-TRYAGAIN …`), as a throttled or loading
//! server would.
//!
//! Bounded: it listens on 127.0.0.1 only, serves at most [`MAX_CLIENTS`] connections at once,
//! refuses commands and replies larger than [`MAX_MESSAGE`], and stops its threads when
//! dropped.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// The most client connections served at once.
pub(crate) const MAX_CLIENTS: usize = 64;
/// The largest command or reply, in bytes.
pub(crate) const MAX_MESSAGE: usize = 64 << 20;

/// Commands never refused: the ones a client sends to set a connection up.
const SETUP: &[&str] = &[
    "HELLO", "AUTH", "SELECT", "CLIENT", "PING", "READONLY", "QUIT",
];

pub(crate) struct Proxy {
    pub(crate) port: u16,
    state: Arc<State>,
    accept: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct State {
    stop: AtomicBool,
    clients: AtomicUsize,
    /// How many of the next commands get `reply` instead of being forwarded.
    faults: AtomicU64,
    reply: Mutex<String>,
    /// Only commands whose name (see [`name_of`]) is this are refused, when set.
    only: Mutex<Option<String>>,
    /// Whether a refused command is first run by the server (its reply lost), as a command
    /// whose reply timed out or whose connection dropped was.
    run_refused: AtomicBool,
    /// Commands refused so far.
    refused: AtomicU64,
    /// Commands forwarded, by name (`EVAL` is named after its script, see [`name_of`]).
    counts: Mutex<BTreeMap<String, u64>>,
    /// Batches of commands that the proxy had to wait for (one per round trip of a client).
    round_trips: AtomicU64,
    streams: Mutex<Vec<TcpStream>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Proxy {
    /// A proxy in front of the server at `upstream` (`host:port`).
    pub(crate) fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let state = Arc::new(State::default());
        let shared = state.clone();
        let accept = std::thread::spawn(move || {
            while !shared.stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        if shared.clients.load(Ordering::SeqCst) >= MAX_CLIENTS {
                            drop(client);
                            continue;
                        }
                        let _ = client.set_nonblocking(false);
                        shared.clients.fetch_add(1, Ordering::SeqCst);
                        if let Ok(copy) = client.try_clone() {
                            shared.streams.lock().unwrap().push(copy);
                        }
                        let state = shared.clone();
                        let handle = std::thread::spawn(move || {
                            let _ = serve(&state, client, upstream);
                            state.clients.fetch_sub(1, Ordering::SeqCst);
                        });
                        shared.threads.lock().unwrap().push(handle);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Proxy {
            port,
            state,
            accept: Some(accept),
        }
    }

    /// A proxy in front of the server of a `redis://host:port/…` URL.
    pub(crate) fn in_front_of(url: &str) -> Proxy {
        let rest = url.trim_start_matches("redis://");
        let authority = rest.split('/').next().unwrap_or(rest);
        let addr = std::net::ToSocketAddrs::to_socket_addrs(authority)
            .expect("server address")
            .next()
            .expect("server address");
        Proxy::start(addr)
    }

    /// A `redis://` URL of the proxy, with `tail` (`/0?prefix=…`) appended.
    pub(crate) fn url(&self, tail: &str) -> String {
        format!("redis://127.0.0.1:{}{tail}", self.port)
    }

    /// Answers the next `n` commands (but those that set a connection up) with `reply` (an
    /// error line such as `BUSY Redis is busy running a script`), instead of forwarding them.
    pub(crate) fn refuse(&self, n: u64, reply: &str) {
        *self.state.reply.lock().unwrap() = reply.to_owned();
        *self.state.only.lock().unwrap() = None;
        self.state.run_refused.store(false, Ordering::SeqCst);
        self.state.faults.store(n, Ordering::SeqCst);
    }

    /// Answers the next `n` commands named `name` (see [`name_of`]: `EVAL list`, `SCAN`, …)
    /// with `reply`, and forwards the others.
    pub(crate) fn refuse_only(&self, n: u64, name: &str, reply: &str) {
        *self.state.reply.lock().unwrap() = reply.to_owned();
        *self.state.only.lock().unwrap() = Some(name.to_owned());
        self.state.run_refused.store(false, Ordering::SeqCst);
        self.state.faults.store(n, Ordering::SeqCst);
    }

    /// Like [`refuse_only`](Self::refuse_only), but each of those commands is run by the
    /// server first and its reply dropped: the client is told `reply` for a command that ran,
    /// as when a reply is lost, and a client that sends it again runs it twice.
    pub(crate) fn lose_reply_only(&self, n: u64, name: &str, reply: &str) {
        *self.state.reply.lock().unwrap() = reply.to_owned();
        *self.state.only.lock().unwrap() = Some(name.to_owned());
        self.state.run_refused.store(true, Ordering::SeqCst);
        self.state.faults.store(n, Ordering::SeqCst);
    }

    /// How many of the refusals asked for are still to come.
    pub(crate) fn refused_pending(&self) -> u64 {
        self.state.faults.load(Ordering::SeqCst)
    }

    /// Commands refused so far.
    pub(crate) fn refused(&self) -> u64 {
        self.state.refused.load(Ordering::SeqCst)
    }

    /// The commands forwarded since the last call, by name, and the round trips.
    pub(crate) fn take_counts(&self) -> (BTreeMap<String, u64>, u64) {
        let counts = std::mem::take(&mut *self.state.counts.lock().unwrap());
        let trips = self.state.round_trips.swap(0, Ordering::SeqCst);
        (counts, trips)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        for stream in self.state.streams.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        let threads: Vec<_> = self.state.threads.lock().unwrap().drain(..).collect();
        for t in threads {
            let _ = t.join();
        }
    }
}

/// Serves one client: each command is refused, or forwarded and its reply relayed.
fn serve(state: &State, client: TcpStream, upstream: SocketAddr) -> io::Result<()> {
    let server = TcpStream::connect_timeout(&upstream, Duration::from_secs(5))?;
    // Replies go back one by one: without this, Nagle's algorithm holds each second one until
    // the client acknowledges the first (tens of milliseconds).
    server.set_nodelay(true)?;
    client.set_nodelay(true)?;
    if let Ok(copy) = server.try_clone() {
        state.streams.lock().unwrap().push(copy);
    }
    let mut to_server = server.try_clone()?;
    let mut from_server = BufReader::new(server);
    let mut to_client = client.try_clone()?;
    let mut from_client = BufReader::new(client);
    loop {
        // A command that the proxy had to wait for starts a round trip; the others came in
        // the same write (a pipeline).
        let waited = from_client.buffer().is_empty();
        let mut command = Vec::new();
        let Some(args) = read_command(&mut from_client, &mut command)? else {
            return Ok(());
        };
        if waited {
            state.round_trips.fetch_add(1, Ordering::SeqCst);
        }
        let name = name_of(&args);
        let setup = SETUP.contains(&args.first().map(|a| upper(a)).unwrap_or_default().as_str());
        let chosen = match &*state.only.lock().unwrap() {
            Some(only) => *only == name,
            None => true,
        };
        if !setup
            && chosen
            && state
                .faults
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            state.refused.fetch_add(1, Ordering::SeqCst);
            if state.run_refused.load(Ordering::SeqCst) {
                to_server.write_all(&command)?;
                read_reply(&mut from_server, &mut Vec::new())?;
            }
            let reply = format!("-{}\r\n", state.reply.lock().unwrap());
            to_client.write_all(reply.as_bytes())?;
            continue;
        }
        *state.counts.lock().unwrap().entry(name).or_default() += 1;
        to_server.write_all(&command)?;
        let mut reply = Vec::new();
        read_reply(&mut from_server, &mut reply)?;
        to_client.write_all(&reply)?;
    }
}

fn upper(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).to_ascii_uppercase()
}

/// The name a command is counted under: its name, with the subcommand of `CONFIG`, `CLIENT`
/// and `OBJECT`, and for `EVAL` the script it runs (recognised by a phrase of it).
fn name_of(args: &[Vec<u8>]) -> String {
    let name = args.first().map(|a| upper(a)).unwrap_or_default();
    match name.as_str() {
        "CONFIG" | "CLIENT" | "OBJECT" | "CLUSTER" => {
            format!(
                "{name} {}",
                args.get(1).map(|a| upper(a)).unwrap_or_default()
            )
        }
        "EVAL" => {
            let script = String::from_utf8_lossy(args.get(1).map_or(&[][..], |s| s));
            let kind = [
                ("OBJECT', 'IDLETIME", "list"),
                ("local deleted = 0\nfor _, data in ipairs(KEYS)", "delete"),
                ("if kind ~= 'string' then return {kind} end", "probe"),
                ("'NX', 'PX', ttl)", "create"),
                ("redis.call('SET', data, ARGV[1]", "write"),
                ("'w', id, 'n', n", "publish"),
                ("redis.call('HSET', KEYS[2], 'a', ARGV[1])", "touch"),
                (
                    "redis.call('HMGET', KEYS[1], 'w', 'n', 's', 'c')",
                    "manifest",
                ),
                ("redis.call('HGET', KEYS[1], 'w') == ARGV[1]", "sweep"),
            ]
            .iter()
            .find(|(phrase, _)| script.contains(phrase))
            .map_or("?", |(_, kind)| kind);
            format!("EVAL {kind}")
        }
        _ => name,
    }
}

fn read_line(r: &mut impl BufRead, out: &mut Vec<u8>) -> io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    let n = r.take(64 * 1024).read_until(b'\n', &mut line)?;
    if n == 0 {
        return Ok(None);
    }
    if !line.ends_with(b"\r\n") {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "line too long or cut",
        ));
    }
    out.extend_from_slice(&line);
    line.truncate(line.len() - 2);
    Ok(Some(line))
}

fn number(line: &[u8]) -> io::Result<i64> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not a number"))
}

fn read_exact_into(r: &mut impl Read, len: usize, out: &mut Vec<u8>) -> io::Result<Vec<u8>> {
    if out.len() + len > MAX_MESSAGE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "message too large",
        ));
    }
    let mut data = vec![0; len + 2];
    r.read_exact(&mut data)?;
    out.extend_from_slice(&data);
    data.truncate(len);
    Ok(data)
}

/// Reads one command (an array of bulk strings), its bytes into `raw`; `None` at the end.
fn read_command(r: &mut impl BufRead, raw: &mut Vec<u8>) -> io::Result<Option<Vec<Vec<u8>>>> {
    let Some(line) = read_line(r, raw)? else {
        return Ok(None);
    };
    if line.first() != Some(&b'*') {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "not a command"));
    }
    let count = number(&line[1..])?;
    let mut args = Vec::new();
    for _ in 0..count.clamp(0, 1 << 20) {
        let line = read_line(r, raw)?.ok_or(io::ErrorKind::UnexpectedEof)?;
        if line.first() != Some(&b'$') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "not a bulk string",
            ));
        }
        let len = usize::try_from(number(&line[1..])?)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "negative length"))?;
        args.push(read_exact_into(r, len, raw)?);
    }
    Ok(Some(args))
}

/// Reads one reply (RESP2 or RESP3), its bytes into `raw`.
fn read_reply(r: &mut impl BufRead, raw: &mut Vec<u8>) -> io::Result<()> {
    let line = read_line(r, raw)?.ok_or(io::ErrorKind::UnexpectedEof)?;
    let (kind, rest) = line
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "empty reply"))?;
    match kind {
        b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => Ok(()),
        b'$' | b'!' | b'=' => {
            let len = number(rest)?;
            if len >= 0 {
                read_exact_into(r, len as usize, raw)?;
            }
            Ok(())
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let n = number(rest)?;
            let n = if matches!(kind, b'%' | b'|') {
                n * 2
            } else {
                n
            };
            for _ in 0..n.clamp(0, 1 << 24) {
                read_reply(r, raw)?;
            }
            if *kind == b'|' {
                // An attribute precedes the reply it describes.
                read_reply(r, raw)?;
            }
            Ok(())
        }
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "unknown reply type",
        )),
    }
}
