//! Helpers shared by the integration tests: the test servers from the environment, unique
//! namespaces, a raw connection for looking at what the backend wrote.

#![allow(dead_code)] // Each test binary uses its own subset.

pub(crate) mod proxy;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cachette_core::plugin::testkit;
use cachette_redis::{RedisBackend, RedisConfig};

/// The single test server (`redis://127.0.0.1:PORT/0`), or `None` to skip.
pub(crate) fn single_url() -> Option<String> {
    testkit::server_from_env("CACHETTE_TEST_REDIS_URL")
}

/// The nodes of the test cluster, or `None` to skip.
pub(crate) fn cluster_urls() -> Option<Vec<String>> {
    testkit::server_from_env("CACHETTE_TEST_REDIS_CLUSTER_URLS")
        .map(|v| v.split(',').map(str::to_owned).collect())
}

/// A `redis+cluster://h:p,h:p/` URL of the test cluster.
pub(crate) fn cluster_url(urls: &[String]) -> String {
    let hosts: Vec<&str> = urls
        .iter()
        .map(|u| u.trim_start_matches("redis://").trim_end_matches('/'))
        .collect();
    format!("redis+cluster://{}/", hosts.join(","))
}

/// A namespace no other test run uses.
pub(crate) fn unique_prefix(tag: &str) -> String {
    testkit::unique_root(&format!("redis-{tag}"))
}

/// A backend on the single test server, in a fresh namespace.
pub(crate) fn single(
    tag: &str,
    configure: impl FnOnce(RedisConfig) -> RedisConfig,
) -> Option<RedisBackend> {
    let url = single_url()?;
    let config = configure(RedisConfig::new(url).with_prefix(unique_prefix(tag)));
    Some(config.build_backend().expect("backend"))
}

/// A backend on the test cluster, in a fresh namespace.
pub(crate) fn cluster(
    tag: &str,
    configure: impl FnOnce(RedisConfig) -> RedisConfig,
) -> Option<RedisBackend> {
    let urls = cluster_urls()?;
    let config = configure(RedisConfig::cluster(urls).with_prefix(unique_prefix(tag)));
    Some(config.build_backend().expect("backend"))
}

/// Both kinds of backend that are configured.
pub(crate) fn both(
    tag: &str,
    configure: impl Fn(RedisConfig) -> RedisConfig,
) -> Vec<(&'static str, RedisBackend)> {
    let mut out = Vec::new();
    if let Some(b) = single(tag, &configure) {
        out.push(("single", b));
    }
    if let Some(b) = cluster(tag, &configure) {
        out.push(("cluster", b));
    }
    out
}

/// A raw connection to the same server(s), to inspect keys.
pub(crate) struct Raw {
    single: Option<redis::aio::MultiplexedConnection>,
    cluster: Option<redis::cluster_async::ClusterConnection>,
}

impl Raw {
    pub(crate) async fn of(backend: &RedisBackend) -> Raw {
        let config = backend.config();
        if config.cluster {
            let client = redis::cluster::ClusterClient::new(config.urls.clone()).expect("client");
            Raw {
                single: None,
                cluster: Some(client.get_async_connection().await.expect("connect")),
            }
        } else {
            let client = redis::Client::open(config.urls[0].as_str()).expect("client");
            Raw {
                single: Some(
                    client
                        .get_multiplexed_async_connection()
                        .await
                        .expect("connect"),
                ),
                cluster: None,
            }
        }
    }

    pub(crate) async fn query<T: redis::FromRedisValue>(&mut self, cmd: &redis::Cmd) -> T {
        match (&mut self.single, &mut self.cluster) {
            (Some(c), _) => cmd.query_async(c).await.expect("raw query"),
            (_, Some(c)) => cmd.query_async(c).await.expect("raw query"),
            _ => unreachable!(),
        }
    }

    /// Every key matching a pattern (on every master of a cluster).
    pub(crate) async fn keys(&mut self, pattern: &str) -> Vec<String> {
        match (&mut self.single, &mut self.cluster) {
            (Some(c), _) => redis::cmd("KEYS")
                .arg(pattern)
                .query_async(c)
                .await
                .expect("KEYS"),
            (_, Some(c)) => {
                use redis::cluster_routing::{
                    MultipleNodeRoutingInfo, ResponsePolicy, RoutingInfo,
                };
                let v = c
                    .route_command(
                        redis::cmd("KEYS").arg(pattern).clone(),
                        RoutingInfo::MultiNode((
                            MultipleNodeRoutingInfo::AllMasters,
                            Some(ResponsePolicy::CombineArrays),
                        )),
                    )
                    .await
                    .expect("KEYS");
                redis::from_redis_value(v).expect("keys")
            }
            _ => unreachable!(),
        }
    }
}

/// The backend as a shared dynamic backend.
pub(crate) fn dyn_backend(b: RedisBackend) -> cachette_core::plugin::DynBackend {
    Arc::new(b)
}

/// A private `redis-server`, killed when dropped (also when the test fails).
pub(crate) struct Server {
    bin: String,
    extra: Vec<String>,
    /// Serves TLS only, on `port`.
    tls: bool,
    pub(crate) port: u16,
    child: Option<Child>,
}

impl Server {
    /// Starts a server with extra arguments (`--maxmemory-policy allkeys-lfu`, …).
    pub(crate) fn start(bin: &str, extra: &[&str]) -> Server {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut server = Server {
            bin: bin.to_owned(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            tls: false,
            port,
            child: None,
        };
        server.launch(true);
        server
    }

    /// Starts a server that speaks TLS only, with a certificate and key in PEM files.
    pub(crate) fn start_tls(bin: &str, cert: &str, key: &str) -> Server {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let port_arg = port.to_string();
        let extra = [
            "--tls-port",
            &port_arg,
            "--tls-cert-file",
            cert,
            "--tls-key-file",
            key,
            "--tls-ca-cert-file",
            cert,
            "--tls-auth-clients",
            "no",
        ];
        let mut server = Server {
            bin: bin.to_owned(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            tls: true,
            port,
            child: None,
        };
        server.restart();
        server
    }

    /// Starts the server again on its port and waits until it answers.
    pub(crate) fn restart(&mut self) {
        self.launch(false);
    }

    /// Starts the server and waits until it answers. A port chosen free may be taken by another
    /// server before this one binds it (tests run in parallel): this one then exits, and the
    /// other answers in its place. With `fresh` (a plain server just created), such a start is
    /// tried again on another free port.
    fn launch(&mut self, fresh: bool) {
        for _ in 0..5 {
            if self.spawn_and_wait() {
                return;
            }
            self.stop();
            assert!(
                fresh && !self.tls,
                "another server answers on port {}",
                self.port
            );
            self.port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
        }
        panic!("redis-server could not get a port of its own");
    }

    /// Starts the server on its port; says whether it is the one that answers there.
    fn spawn_and_wait(&mut self) -> bool {
        let plain_port = if self.tls { 0 } else { self.port };
        let child = Command::new(&self.bin)
            .args(["--port", &plain_port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(std::env::temp_dir())
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting redis-server");
        let pid = child.id();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.answers() {
            if self.exited() {
                return false;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.tls
            || self
                .answering_pid()
                .is_none_or(|answering| answering == pid)
    }

    /// Whether the server's process has ended.
    fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_none_or(|c| c.try_wait().is_ok_and(|status| status.is_some()))
    }

    /// The process id of the server answering on the port (`None` when it asks for a
    /// password, or does not say).
    fn answering_pid(&self) -> Option<u32> {
        let mut conn = redis::Client::open(format!("redis://127.0.0.1:{}", self.port))
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
            .ok()?;
        let info: String = redis::cmd("INFO").arg("server").query(&mut conn).ok()?;
        info.lines()
            .find_map(|l| l.strip_prefix("process_id:"))
            .and_then(|pid| pid.trim().parse().ok())
    }

    pub(crate) fn answers(&self) -> bool {
        let Ok(mut s) = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)) else {
            return false;
        };
        if self.tls {
            return true;
        }
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let mut buf = [0u8; 7];
        // A server with a password answers, but refuses the command.
        s.write_all(b"PING\r\n").is_ok()
            && s.read_exact(&mut buf).is_ok()
            && (&buf == b"+PONG\r\n" || &buf == b"-NOAUTH")
    }

    /// The URL of the server, with `query` appended.
    pub(crate) fn url(&self, query: &str) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}/0{query}", self.port)
    }

    /// Sends a signal (`STOP`, `CONT`) to the server.
    pub(crate) fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let status = Command::new("kill")
            .args([format!("-{signal}"), pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal} {pid}");
    }

    /// Kills the server.
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A free port on loopback.
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A Redis Cluster of its own, each master behind a [`proxy::Proxy`] that it announces as its
/// address: a cluster client that connects through the proxies reaches every master through
/// them, so that the proxies see every command it sends. The masters talk to each other
/// directly.
pub(crate) struct ProxiedCluster {
    pub(crate) proxies: Vec<proxy::Proxy>,
    servers: Vec<Server>,
    node_files: Vec<std::path::PathBuf>,
}

impl ProxiedCluster {
    /// Starts `masters` masters sharing the 16384 slots, and waits until the cluster is up.
    pub(crate) fn start(bin: &str, masters: usize) -> ProxiedCluster {
        let tag = format!(
            "{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        );
        let mut servers = Vec::new();
        let mut buses = Vec::new();
        let mut node_files = Vec::new();
        for i in 0..masters {
            let bus = free_port().to_string();
            let file = format!("cachette-nodes-{tag}-{i}.conf");
            node_files.push(std::env::temp_dir().join(&file));
            servers.push(Server::start(
                bin,
                &[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    &file,
                    "--cluster-port",
                    &bus,
                    "--cluster-announce-ip",
                    "127.0.0.1",
                ],
            ));
            buses.push(bus);
        }
        let proxies: Vec<proxy::Proxy> = servers
            .iter()
            .map(|s| proxy::Proxy::start((Ipv4Addr::LOCALHOST, s.port).into()))
            .collect();
        let mut conns: Vec<redis::Connection> = servers
            .iter()
            .map(|s| {
                redis::Client::open(format!("redis://127.0.0.1:{}", s.port))
                    .and_then(|c| c.get_connection())
                    .expect("a connection to a cluster node")
            })
            .collect();
        for (i, conn) in conns.iter_mut().enumerate() {
            let _: () = redis::cmd("CONFIG")
                .arg("SET")
                .arg("cluster-announce-port")
                .arg(proxies[i].port)
                .query(conn)
                .expect("CONFIG SET cluster-announce-port");
            let (first, last) = (16384 * i / masters, 16384 * (i + 1) / masters - 1);
            let _: () = redis::cmd("CLUSTER")
                .arg("ADDSLOTSRANGE")
                .arg(first)
                .arg(last)
                .query(conn)
                .expect("CLUSTER ADDSLOTSRANGE");
        }
        for i in 1..masters {
            let _: () = redis::cmd("CLUSTER")
                .arg("MEET")
                .arg("127.0.0.1")
                .arg(servers[i].port)
                .arg(&buses[i])
                .query(&mut conns[0])
                .expect("CLUSTER MEET");
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let up = conns.iter_mut().all(|conn| {
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query(conn)
                    .unwrap_or_default();
                let slots: Vec<redis::Value> = redis::cmd("CLUSTER")
                    .arg("SLOTS")
                    .query(conn)
                    .unwrap_or_default();
                info.contains("cluster_state:ok")
                    && info.contains(&format!("cluster_known_nodes:{masters}"))
                    && slots.len() == masters
            });
            if up {
                break;
            }
            assert!(Instant::now() < deadline, "the cluster did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
        ProxiedCluster {
            proxies,
            servers,
            node_files,
        }
    }

    /// The `redis+cluster://` URL of the cluster through its proxies.
    pub(crate) fn url(&self) -> String {
        let hosts: Vec<String> = self
            .proxies
            .iter()
            .map(|p| format!("127.0.0.1:{}", p.port))
            .collect();
        format!("redis+cluster://{}/", hosts.join(","))
    }

    /// The keys matching `pattern` on every master, read directly (not through the proxies).
    pub(crate) fn keys(&self, pattern: &str) -> Vec<String> {
        let mut keys = Vec::new();
        for s in &self.servers {
            let mut conn = redis::Client::open(format!("redis://127.0.0.1:{}", s.port))
                .and_then(|c| c.get_connection())
                .expect("a connection to a cluster node");
            let found: Vec<String> = redis::cmd("KEYS")
                .arg(pattern)
                .query(&mut conn)
                .expect("KEYS");
            keys.extend(found);
        }
        keys
    }
}

impl Drop for ProxiedCluster {
    fn drop(&mut self) {
        self.proxies.clear();
        for s in &mut self.servers {
            s.stop();
        }
        for file in &self.node_files {
            let _ = std::fs::remove_file(file);
        }
    }
}
