//! Talking to the servers: free loopback ports, and one Redis command or bodyless HTTP
//! request at a time over a plain socket (no client library for the readiness checks).

use std::collections::HashSet;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Result, bail};

use super::{CLUSTER_BUS_OFFSET, PORT_RANGE};

/// Hands out distinct loopback ports that are free right now.
pub(super) struct Ports {
    pub(super) taken: HashSet<u16>,
    rng: u64,
}

impl Ports {
    pub(super) fn new() -> Ports {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Ports {
            taken: HashSet::new(),
            rng: nanos ^ (u64::from(std::process::id()) << 32) | 1,
        }
    }

    pub(super) fn pick(&mut self, with_bus: bool) -> Result<u16> {
        let span = u64::from(PORT_RANGE.end - PORT_RANGE.start);
        for _ in 0..2000 {
            // xorshift64
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            let port = PORT_RANGE.start + (self.rng % span) as u16;
            let mut wanted = vec![port];
            if with_bus {
                wanted.push(port + CLUSTER_BUS_OFFSET);
            }
            if wanted.iter().all(|p| {
                !self.taken.contains(p) && TcpListener::bind((Ipv4Addr::LOCALHOST, *p)).is_ok()
            }) {
                self.taken.extend(wanted);
                return Ok(port);
            }
        }
        bail!("found no free port on 127.0.0.1 in {PORT_RANGE:?}")
    }
}

pub(super) fn connect(port: u16) -> io::Result<TcpStream> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    Ok(stream)
}

/// Sends one command in RESP and returns a simple, integer or bulk string reply.
pub(super) fn redis_cmd(port: u16, args: &[&str]) -> io::Result<String> {
    let mut stream = connect(port)?;
    let mut request = format!("*{}\r\n", args.len());
    for arg in args {
        request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    stream.write_all(request.as_bytes())?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let line = line.trim_end();
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    match line.split_at_checked(1) {
        Some(("+" | ":", rest)) => Ok(rest.to_owned()),
        Some(("-", err)) => Err(io::Error::other(err.to_owned())),
        Some(("$", len)) => {
            let Ok(len) = usize::try_from(len.parse::<i64>().map_err(|_| bad(line))?) else {
                return Ok(String::new()); // nil
            };
            let mut buf = vec![0; len + 2];
            reader.read_exact(&mut buf)?;
            buf.truncate(len);
            Ok(String::from_utf8_lossy(&buf).into_owned())
        }
        _ => Err(bad(line)),
    }
}

/// A bodyless HTTP/1.1 request; returns the status code and the raw body.
pub(super) fn http(port: u16, method: &str, path: &str) -> io::Result<(u16, String)> {
    let mut stream = connect(port)?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: cachette-xtask\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    let status = text
        .strip_prefix("HTTP/")
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an HTTP response"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    Ok((status, body))
}
