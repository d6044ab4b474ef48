//! Local test servers: a single Redis, a three-master Redis Cluster and a moto S3 server.
//!
//! Everything listens on 127.0.0.1 only. State lives in `target/cachette-services/`:
//! `env` (`KEY=VALUE` lines), `pids` (`<kind> <pid> <port>` lines) and one directory per
//! server holding its data and `server.log`.

use std::fs::{self, File};
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use crate::flags::ServicesCmd;

mod install;
mod wire;

pub(crate) use install::run_bounded;
use install::{ensure_moto, ensure_redis};
use wire::{Ports, http, redis_cmd};

/// The bucket created in the moto server.
const BUCKET: &str = "cachette-test";
/// How tests start their own moto server (exported as `CACHETTE_TEST_MOTO_CMD`).
const MOTO_CMD: &str = "python3 -m moto.server";
/// The shared moto server, run by `python3 -c`: moto's object `PUT` checks `If-None-Match: *`
/// and then stores, in a server with a thread per request, so two racing creates both won now
/// and then (2 of 600 rounds of 8 racers); S3 makes the two one step. Object `PUT`s take one
/// lock here, which makes them so. A moto without the method runs as it is, with a warning.
const MOTO_SERVER: &str = "\
import threading, moto.server
from moto.s3.responses import S3Response
put = getattr(S3Response, 'put_object', None)
if put is None:
    print('services: moto has no S3Response.put_object; racing conditional PUTs may both win', flush=True)
else:
    lock = threading.Lock()
    def put_object(self, *args, **kwargs):
        with lock:
            return put(self, *args, **kwargs)
    S3Response.put_object = put_object
moto.server.main()
";
const CLUSTER_NODES: usize = 3;
/// Server ports are drawn from here; cluster bus ports (+10000) stay below the
/// usual ephemeral range (32768..), so they do not collide with client sockets.
const PORT_RANGE: std::ops::Range<u16> = 10_000..22_000;
const CLUSTER_BUS_OFFSET: u16 = 10_000;
/// Attempts per server when it exits right away (e.g. a port taken in the meantime).
const START_ATTEMPTS: u32 = 3;

const REDIS_READY: Duration = Duration::from_secs(10);
const MOTO_READY: Duration = Duration::from_secs(60);
const CLUSTER_CREATE: Duration = Duration::from_secs(60);
const CLUSTER_OK: Duration = Duration::from_secs(30);
const TERM_GRACE: Duration = Duration::from_secs(10);
const KILL_GRACE: Duration = Duration::from_secs(5);
const INSTALL_TIMEOUT: Duration = Duration::from_secs(900);
const POLL: Duration = Duration::from_millis(100);

#[allow(unsafe_code)] // Two libc calls, declared safe: see below.
mod sys {
    // Both calls are memory-safe for any argument values.
    unsafe extern "C" {
        pub(super) safe fn kill(pid: i32, sig: i32) -> i32;
        pub(super) safe fn geteuid() -> u32;
    }
    pub(super) const SIGKILL: i32 = 9;
    pub(super) const SIGTERM: i32 = 15;
}

/// `cargo xtask services <cmd>`.
pub(crate) fn run(cmd: ServicesCmd) -> Result<ExitCode> {
    match cmd {
        ServicesCmd::Start => {
            let services = ensure(true)?;
            for (key, value) in services.env() {
                println!("export {key}={}", shell_quote(value));
            }
            eprintln!(
                "services: env written to {}; stop with `cargo xtask services stop`",
                env_file(&state_dir()).display()
            );
            services.detach();
            Ok(ExitCode::SUCCESS)
        }
        ServicesCmd::Stop => {
            let dir = state_dir();
            match Services::load(&dir)? {
                Some(mut services) => services.shutdown()?,
                None => {
                    remove_dir(&dir)?;
                    eprintln!("services: nothing to stop");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ServicesCmd::Status => status(),
    }
}

fn status() -> Result<ExitCode> {
    let dir = state_dir();
    let Some(services) = Services::load(&dir)? else {
        eprintln!("services: not running (no {})", pids_file(&dir).display());
        return Ok(ExitCode::FAILURE);
    };
    for p in &services.procs {
        let alive = pid_matches(p.pid, p.kind.marker());
        let answers = alive && probe(p.kind, p.port);
        eprintln!(
            "  {:<8} pid {:<8} 127.0.0.1:{:<6} {}",
            p.kind.name(),
            p.pid,
            p.port,
            match (alive, answers) {
                (true, true) => "running, answering",
                (true, false) => "running, NOT answering",
                _ => "NOT running",
            }
        );
    }
    match services.check() {
        Ok(()) => {
            eprintln!("services: healthy; env in {}", env_file(&dir).display());
            for (key, value) in services.env() {
                eprintln!("  {key}={value}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            eprintln!("services: unhealthy: {err:#}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Makes sure the servers run: reuses healthy ones from an earlier `start`, otherwise
/// installs what is missing and starts fresh ones. Only freshly started servers are
/// stopped when the returned value is dropped. `detached` puts new servers in their own
/// process group (for `services start`, so they outlive the shell job).
pub(crate) fn ensure(detached: bool) -> Result<Services> {
    let dir = state_dir();
    if let Some(mut existing) = Services::load(&dir)? {
        match existing.check().and_then(|()| existing.create_bucket()) {
            Ok(()) => {
                eprintln!(
                    "services: reusing the servers already running (see `cargo xtask services status`)"
                );
                return Ok(existing);
            }
            Err(err) => {
                eprintln!("services: earlier servers are unusable ({err:#}); cleaning up");
                existing.shutdown()?;
            }
        }
    }
    remove_dir(&dir)?;

    let started = Instant::now();
    let (redis_server, redis_cli) = ensure_redis()?;
    ensure_moto()?;
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;

    let mut services = Services {
        state_dir: dir,
        procs: Vec::new(),
        env: Vec::new(),
        owned: true,
    };
    let mut launcher = Launcher {
        redis_server,
        detached,
        ports: Ports::new(),
    };
    // moto is the slow one: spawn it first and wait for it last.
    let moto = services.spawn(&mut launcher, Kind::Moto)?;
    let redis = services.spawn(&mut launcher, Kind::Redis)?;
    services.wait_ready(redis, &mut launcher)?;
    for _ in 0..CLUSTER_NODES {
        let node = services.spawn(&mut launcher, Kind::Cluster)?;
        services.wait_ready(node, &mut launcher)?;
    }
    services.create_cluster(&redis_cli)?;
    services.wait_ready(moto, &mut launcher)?;
    services.create_bucket()?;
    services.wait_cluster_ok()?;

    services.env = services.compute_env(&launcher.redis_server);
    // The same lines as `services start` prints: `source target/cachette-services/env` works.
    let env_text: String = services
        .env
        .iter()
        .map(|(k, v)| format!("export {k}={}\n", shell_quote(v)))
        .collect();
    let path = env_file(&services.state_dir);
    fs::write(&path, env_text).with_context(|| format!("writing {}", path.display()))?;
    eprintln!(
        "services: all ready in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(services)
}

fn state_dir() -> PathBuf {
    crate::project_root()
        .join("target")
        .join("cachette-services")
}

fn env_file(dir: &Path) -> PathBuf {
    dir.join("env")
}

fn pids_file(dir: &Path) -> PathBuf {
    dir.join("pids")
}

fn remove_dir(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", dir.display()))
        }
        _ => Ok(()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Redis,
    Cluster,
    Moto,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Redis => "redis",
            Kind::Cluster => "cluster",
            Kind::Moto => "moto",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        [Kind::Redis, Kind::Cluster, Kind::Moto]
            .into_iter()
            .find(|k| k.name() == s)
    }

    /// A string the process's command line contains (guards against reused PIDs).
    fn marker(self) -> &'static str {
        match self {
            Kind::Redis | Kind::Cluster => "redis-server",
            Kind::Moto => "moto.server",
        }
    }

    fn ready_timeout(self) -> Duration {
        match self {
            Kind::Redis | Kind::Cluster => REDIS_READY,
            Kind::Moto => MOTO_READY,
        }
    }
}

/// One server process.
#[derive(Debug)]
struct Proc {
    kind: Kind,
    port: u16,
    pid: u32,
    /// Present when this xtask process spawned it.
    child: Option<Child>,
    dir: PathBuf,
}

impl Proc {
    fn log(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    fn is_alive(&mut self) -> bool {
        if let Some(child) = &mut self.child {
            // Reaps it if it exited, so a zombie does not count as alive.
            return matches!(child.try_wait(), Ok(None));
        }
        pid_matches(self.pid, self.kind.marker())
    }
}

/// The running servers. Dropping it stops them if this process started them.
#[derive(Debug)]
pub(crate) struct Services {
    state_dir: PathBuf,
    procs: Vec<Proc>,
    env: Vec<(String, String)>,
    owned: bool,
}

impl Drop for Services {
    fn drop(&mut self) {
        if self.owned
            && let Err(err) = self.shutdown()
        {
            eprintln!("services: error while stopping: {err:#}");
        }
    }
}

struct Launcher {
    redis_server: PathBuf,
    detached: bool,
    ports: Ports,
}

enum WaitFailure {
    Exited(ExitStatus),
    Timeout,
}

impl Services {
    /// The variables the test suites read.
    pub(crate) fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// Leaves the servers running after this value is gone.
    pub(crate) fn detach(mut self) {
        self.owned = false;
    }

    fn load(dir: &Path) -> Result<Option<Services>> {
        let pids = match fs::read_to_string(pids_file(dir)) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).context("reading the pids file"),
        };
        let mut procs = Vec::new();
        for line in pids.lines().filter(|l| !l.trim().is_empty()) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let parsed = match fields[..] {
                [kind, pid, port] => Kind::parse(kind)
                    .zip(pid.parse().ok())
                    .zip(port.parse().ok()),
                _ => None,
            };
            let Some(((kind, pid), port)) = parsed else {
                bail!(
                    "malformed line in {}: `{line}` (remove the directory by hand)",
                    pids_file(dir).display()
                );
            };
            procs.push(Proc {
                kind,
                port,
                pid,
                child: None,
                dir: dir.join(format!("{}-{port}", kind.name())),
            });
        }
        let env = match fs::read_to_string(env_file(dir)) {
            Ok(text) => text.lines().filter_map(parse_export).collect(),
            Err(_) => Vec::new(),
        };
        Ok(Some(Services {
            state_dir: dir.to_path_buf(),
            procs,
            env,
            owned: false,
        }))
    }

    /// All recorded servers alive and answering, the cluster formed, the env file written.
    fn check(&self) -> Result<()> {
        ensure!(
            !self.env.is_empty(),
            "no env file: the start did not finish"
        );
        for (kind, want) in [
            (Kind::Redis, 1),
            (Kind::Cluster, CLUSTER_NODES),
            (Kind::Moto, 1),
        ] {
            let got = self.procs.iter().filter(|p| p.kind == kind).count();
            ensure!(
                got == want,
                "{got} {} server(s) recorded, want {want}",
                kind.name()
            );
        }
        for p in &self.procs {
            ensure!(
                pid_matches(p.pid, p.kind.marker()),
                "{} (pid {}) is gone",
                p.kind.name(),
                p.pid
            );
            ensure!(
                probe(p.kind, p.port),
                "{} on 127.0.0.1:{} does not answer",
                p.kind.name(),
                p.port
            );
        }
        for port in self.ports(Kind::Cluster) {
            ensure!(
                cluster_ok(port),
                "cluster node 127.0.0.1:{port} is not `cluster_state:ok`"
            );
        }
        Ok(())
    }

    fn ports(&self, kind: Kind) -> Vec<u16> {
        self.procs
            .iter()
            .filter(|p| p.kind == kind)
            .map(|p| p.port)
            .collect()
    }

    fn compute_env(&self, redis_server: &Path) -> Vec<(String, String)> {
        let redis = self.ports(Kind::Redis)[0];
        let moto = self.ports(Kind::Moto)[0];
        let cluster: Vec<String> = self
            .ports(Kind::Cluster)
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect();
        [
            (
                "CACHETTE_TEST_REDIS_URL",
                format!("redis://127.0.0.1:{redis}/0"),
            ),
            ("CACHETTE_TEST_REDIS_CLUSTER_URLS", cluster.join(",")),
            (
                "CACHETTE_TEST_S3_ENDPOINT",
                format!("http://127.0.0.1:{moto}"),
            ),
            ("CACHETTE_TEST_S3_BUCKET", BUCKET.to_owned()),
            (
                "CACHETTE_TEST_REDIS_SERVER_BIN",
                redis_server.display().to_string(),
            ),
            ("CACHETTE_TEST_MOTO_CMD", MOTO_CMD.to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    fn write_pids(&self) -> Result<()> {
        let text: String = self
            .procs
            .iter()
            .map(|p| format!("{} {} {}\n", p.kind.name(), p.pid, p.port))
            .collect();
        let path = pids_file(&self.state_dir);
        fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    }

    /// Spawns one server on a fresh port and records it; returns its index.
    fn spawn(&mut self, launcher: &mut Launcher, kind: Kind) -> Result<usize> {
        let proc = self.spawn_proc(launcher, kind)?;
        self.procs.push(proc);
        self.write_pids()?;
        Ok(self.procs.len() - 1)
    }

    fn spawn_proc(&self, launcher: &mut Launcher, kind: Kind) -> Result<Proc> {
        let port = launcher.ports.pick(kind == Kind::Cluster)?;
        let dir = self.state_dir.join(format!("{}-{port}", kind.name()));
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let log = File::create(dir.join("server.log")).context("creating a server log")?;
        let port_s = port.to_string();
        let mut cmd = match kind {
            Kind::Redis | Kind::Cluster => {
                let mut cmd = Command::new(&launcher.redis_server);
                cmd.args(["--bind", "127.0.0.1", "--port", &port_s])
                    .args(["--save", "", "--appendonly", "no", "--dir"])
                    .arg(&dir);
                if kind == Kind::Cluster {
                    cmd.args(["--cluster-enabled", "yes"])
                        .args(["--cluster-config-file", "nodes.conf"])
                        .args(["--cluster-node-timeout", "5000"]);
                }
                cmd
            }
            Kind::Moto => {
                let mut cmd = Command::new("python3");
                cmd.args(["-c", MOTO_SERVER, "-H", "127.0.0.1", "-p", &port_s])
                    .env("PYTHONUNBUFFERED", "1");
                cmd
            }
        };
        cmd.current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if launcher.detached {
            cmd.process_group(0);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("spawning {}: {cmd:?}", kind.name()))?;
        eprintln!(
            "services: started {} on 127.0.0.1:{port} (pid {})",
            kind.name(),
            child.id()
        );
        Ok(Proc {
            kind,
            port,
            pid: child.id(),
            child: Some(child),
            dir,
        })
    }

    /// Waits until server `idx` answers; respawns it on another port if it exits early.
    fn wait_ready(&mut self, idx: usize, launcher: &mut Launcher) -> Result<()> {
        for attempt in 1..=START_ATTEMPTS {
            let proc = &mut self.procs[idx];
            let (kind, port) = (proc.kind, proc.port);
            let started = Instant::now();
            match wait_proc(proc) {
                Ok(()) => {
                    eprintln!(
                        "services: {} ready on 127.0.0.1:{port} ({:.1}s)",
                        kind.name(),
                        started.elapsed().as_secs_f64()
                    );
                    return Ok(());
                }
                Err(WaitFailure::Exited(status)) if attempt < START_ATTEMPTS => {
                    eprintln!(
                        "services: {} on port {port} exited early ({status}); log tail:",
                        kind.name()
                    );
                    print_tail(&proc.log());
                    eprintln!("services: retrying on another port");
                    let fresh = self.spawn_proc(launcher, kind)?;
                    self.procs[idx] = fresh;
                    self.write_pids()?;
                }
                Err(failure) => {
                    let what = match failure {
                        WaitFailure::Exited(status) => format!("exited ({status})"),
                        WaitFailure::Timeout => {
                            format!("did not answer within {}s", kind.ready_timeout().as_secs())
                        }
                    };
                    eprintln!("services: {} on port {port} {what}; log tail:", kind.name());
                    print_tail(&proc.log());
                    bail!(
                        "{} on 127.0.0.1:{port} {what} (log tail above)",
                        kind.name()
                    );
                }
            }
        }
        unreachable!("the last attempt returns")
    }

    fn create_cluster(&self, redis_cli: &Path) -> Result<()> {
        let log_path = self.state_dir.join("cluster-create.log");
        let log = File::create(&log_path)?;
        let mut cmd = Command::new(redis_cli);
        cmd.args(["--cluster", "create"])
            .args(
                self.ports(Kind::Cluster)
                    .iter()
                    .map(|p| format!("127.0.0.1:{p}")),
            )
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(log.try_clone()?)
            .stderr(log);
        eprintln!("services: creating the Redis Cluster");
        match run_bounded(&mut cmd, CLUSTER_CREATE, "redis-cli --cluster create") {
            Ok(status) if status.success() => Ok(()),
            other => {
                eprintln!("services: `redis-cli --cluster create` failed; log tail:");
                print_tail(&log_path);
                match other {
                    Ok(status) => bail!("`redis-cli --cluster create` failed ({status})"),
                    Err(err) => Err(err),
                }
            }
        }
    }

    fn wait_cluster_ok(&self) -> Result<()> {
        let started = Instant::now();
        let ports = self.ports(Kind::Cluster);
        while !ports.iter().all(|&p| cluster_ok(p)) {
            if started.elapsed() > CLUSTER_OK {
                let info = redis_cmd(ports[0], &["CLUSTER", "INFO"]).unwrap_or_default();
                bail!(
                    "the Redis Cluster is not `cluster_state:ok` after {}s:\n{info}",
                    CLUSTER_OK.as_secs()
                );
            }
            sleep(POLL);
        }
        eprintln!(
            "services: cluster state ok ({:.1}s)",
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }

    fn create_bucket(&self) -> Result<()> {
        let port = self.ports(Kind::Moto)[0];
        let (status, body) = http(port, "PUT", &format!("/{BUCKET}"))
            .with_context(|| format!("creating bucket {BUCKET} on 127.0.0.1:{port}"))?;
        ensure!(
            status == 200 || (status == 409 && body.contains("BucketAlreadyOwnedByYou")),
            "creating bucket {BUCKET}: HTTP {status}: {body}"
        );
        Ok(())
    }

    /// SIGTERM, then SIGKILL after a bounded wait; removes the state directory.
    fn shutdown(&mut self) -> Result<()> {
        self.owned = false;
        let mut live: Vec<&mut Proc> = self
            .procs
            .iter_mut()
            .filter_map(|p| if p.is_alive() { Some(p) } else { None })
            .collect();
        let count = live.len();
        for (signal, grace) in [(sys::SIGTERM, TERM_GRACE), (sys::SIGKILL, KILL_GRACE)] {
            if live.is_empty() {
                break;
            }
            for p in &live {
                if let Ok(pid) = i32::try_from(p.pid) {
                    sys::kill(pid, signal);
                }
            }
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline {
                live.retain_mut(|p| p.is_alive());
                if live.is_empty() {
                    break;
                }
                sleep(POLL);
            }
        }
        let survivors: Vec<String> = live.iter().map(|p| p.pid.to_string()).collect();
        self.procs.clear();
        ensure!(
            survivors.is_empty(),
            "processes {} survived SIGKILL; left {} in place",
            survivors.join(", "),
            self.state_dir.display()
        );
        remove_dir(&self.state_dir)?;
        eprintln!("services: stopped {count} server process(es)");
        Ok(())
    }
}

fn wait_proc(proc: &mut Proc) -> Result<(), WaitFailure> {
    let deadline = Instant::now() + proc.kind.ready_timeout();
    loop {
        if let Some(child) = &mut proc.child
            && let Ok(Some(status)) = child.try_wait()
        {
            return Err(WaitFailure::Exited(status));
        }
        if probe(proc.kind, proc.port) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(WaitFailure::Timeout);
        }
        sleep(POLL);
    }
}

fn probe(kind: Kind, port: u16) -> bool {
    match kind {
        Kind::Redis | Kind::Cluster => redis_cmd(port, &["PING"]).is_ok_and(|r| r == "PONG"),
        Kind::Moto => http(port, "GET", "/").is_ok(),
    }
}

fn cluster_ok(port: u16) -> bool {
    redis_cmd(port, &["CLUSTER", "INFO"]).is_ok_and(|info| info.contains("cluster_state:ok"))
}

/// Whether `pid` is a live (non-zombie) process whose command line contains `marker`.
fn pid_matches(pid: u32, marker: &str) -> bool {
    let Ok(pid_i) = i32::try_from(pid) else {
        return false;
    };
    if !Path::new("/proc/self").exists() {
        return sys::kill(pid_i, 0) == 0;
    }
    let dir = Path::new("/proc").join(pid.to_string());
    let Ok(stat) = fs::read_to_string(dir.join("stat")) else {
        return false;
    };
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    if matches!(state, None | Some('Z' | 'X')) {
        return false;
    }
    let cmdline = fs::read(dir.join("cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&cmdline).contains(marker)
}

fn print_tail(path: &Path) {
    match fs::read_to_string(path) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            for line in &lines[lines.len().saturating_sub(25)..] {
                eprintln!("    | {line}");
            }
        }
        Err(err) => eprintln!("    (cannot read {}: {err})", path.display()),
    }
}

fn shell_quote(value: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_./:,@%+=-".contains(c);
    if !value.is_empty() && value.chars().all(plain) {
        value.to_owned()
    } else {
        format!("'{}'", value.replace('\'', r"'\''"))
    }
}

/// A line `export KEY=VALUE` of the env file, with VALUE as [`shell_quote`] wrote it.
fn parse_export(line: &str) -> Option<(String, String)> {
    let (key, value) = line.strip_prefix("export ")?.split_once('=')?;
    let value = match value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
        Some(quoted) => quoted.replace(r"'\''", "'"),
        None => value.to_owned(),
    };
    Some((key.to_owned(), value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_lines_round_trip() {
        for value in [
            "redis://127.0.0.1:1/0",
            "python3 -m moto.server",
            "it's",
            "",
        ] {
            let line = format!("export K={}", shell_quote(value));
            assert_eq!(
                parse_export(&line),
                Some(("K".to_owned(), value.to_owned()))
            );
        }
        assert_eq!(parse_export("K=v"), None);
    }

    #[test]
    fn quoting() {
        assert_eq!(
            shell_quote("redis://127.0.0.1:1/0"),
            "redis://127.0.0.1:1/0"
        );
        assert_eq!(
            shell_quote("python3 -m moto.server"),
            "'python3 -m moto.server'"
        );
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn ports_are_distinct_and_bus_safe() {
        let mut ports = Ports::new();
        let a = ports.pick(true).unwrap();
        let b = ports.pick(true).unwrap();
        assert_ne!(a, b);
        assert!(a < 55_000 && b < 55_000);
        assert!(!ports.taken.insert(a + CLUSTER_BUS_OFFSET));
    }
}
