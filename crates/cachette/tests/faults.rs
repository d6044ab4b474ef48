//! Faults never fail a call: a full disk, a read-only location and an S3 server stopped mid-run
//! each give warnings and the right values, never a partial entry, and caching resumes by
//! itself when the fault goes away. (Redis stopped and restarted mid-run is tested by the Redis
//! backend's `outage` test.)
//!
//! The local-disk tests mount a small tmpfs, which needs the right to mount (root, as here):
//! elsewhere they skip with a message. The full-disk one never runs under `CI=true`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use cachette::{Memory, Report, Reporter};

/// A memory at `location` whose warnings are collected.
fn memory(location: &str) -> (Memory, Arc<Mutex<Vec<String>>>) {
    let warnings = Arc::new(Mutex::new(Vec::new()));
    let sink = warnings.clone();
    let memory = Memory::builder()
        .url(location)
        .reporter(Reporter::new(move |r| {
            if let Report::Warning(w) = r {
                sink.lock().unwrap().push(w.clone());
            }
        }))
        .build()
        .unwrap();
    (memory, warnings)
}

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount` takes it), or says why not.
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mnt");
        std::fs::create_dir(&path).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("SKIPPED: cannot mount a tmpfs here (it needs the right to mount)");
            return None;
        }
        Some(Tmpfs { path, _dir: dir })
    }

    fn remount(&self, option: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,{option}")])
            .arg(&self.path)
            .status()
            .unwrap();
        assert!(status.success(), "remount {option}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

fn location(path: &Path) -> String {
    path.join("cache").to_str().unwrap().to_owned()
}

#[test]
fn a_full_disk_warns_returns_outputs_and_recovers() {
    if ci() {
        eprintln!("SKIPPED under CI=true: mounting a small tmpfs to fill it");
        return;
    }
    let Some(fs) = Tmpfs::mount("2m") else {
        return;
    };
    let (memory, warnings) = memory(&location(&fs.path));
    let calls = AtomicUsize::new(0);
    let block = |i: u32| {
        calls.fetch_add(1, Ordering::SeqCst);
        vec![i as u8; 300 << 10]
    };
    let f = memory.cache_capturing(&block).name("faults::block");
    // 12 × 300 KiB do not fit in 2 MiB: the later stores fail.
    for i in 0..12 {
        assert_eq!(f.eval(i), vec![i as u8; 300 << 10]);
    }
    let w = warnings.lock().unwrap().clone();
    // One warning per faulty call: its first fault, the claim's or the write's.
    assert!(
        w.iter()
            .any(|w| w.contains("cannot store") || w.contains("cannot claim")),
        "{w:?}"
    );
    // Whatever is stored is whole: every hit gives the right value.
    for i in 0..12 {
        if f.check_call_in_cache(&i) {
            assert_eq!(f.eval(i), vec![i as u8; 300 << 10]);
        }
    }
    // No temporary file is left behind by the failed writes.
    let leftovers = walk(&fs.path)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".cachette-tmp-")
        })
        .count();
    assert_eq!(leftovers, 0);
    // Room again: caching resumes by itself.
    memory.clear().unwrap();
    let before = calls.load(Ordering::SeqCst);
    f.eval(100);
    f.eval(100);
    assert_eq!(calls.load(Ordering::SeqCst), before + 1, "stored again");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

#[test]
fn a_read_only_location_serves_hits_and_computes_misses() {
    let Some(fs) = Tmpfs::mount("8m") else {
        return;
    };
    let loc = location(&fs.path);
    let calls = AtomicUsize::new(0);
    let twice = |x: u32| {
        calls.fetch_add(1, Ordering::SeqCst);
        x * 2
    };
    {
        let (memory, _) = memory(&loc);
        let f = memory.cache_capturing(&twice).name("faults::twice");
        f.eval(1);
        f.eval(2);
    }
    fs.remount("ro");
    let (memory, warnings) = memory(&loc);
    let f = memory.cache_capturing(&twice).name("faults::twice");
    let before = calls.load(Ordering::SeqCst);
    assert_eq!(f.eval(1), 2, "a hit from the read-only location");
    assert_eq!(f.eval(2), 4);
    assert_eq!(calls.load(Ordering::SeqCst), before, "loaded, not computed");
    assert_eq!(f.eval(3), 6, "a miss computes");
    assert_eq!(f.eval(3), 6);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        before + 2,
        "and cannot be stored"
    );
    let w = warnings.lock().unwrap().clone();
    // One warning per call that meets the fault: its first (the claim, then the write).
    assert!(w.iter().any(|w| w.contains("permission denied")), "{w:?}");
    let faulty = w.iter().filter(|w| w.contains("permission denied")).count();
    assert!(faulty <= 2, "one per miss: {w:?}");
    // Strict mode: the hit loads; the miss that cannot be stored is an error.
    let strict = Memory::builder().url(&loc).strict(true).build().unwrap();
    let f_strict = strict.cache_capturing(&twice).name("faults::twice");
    assert_eq!(f_strict.try_eval(1).unwrap(), 2);
    let err = f_strict.try_eval(9).unwrap_err();
    let cachette::Error::Backend(backend) = &err else {
        panic!("{err:?}");
    };
    assert_eq!(backend.operation(), "put", "{err}");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        before + 3,
        "computed, not stored"
    );
    // Writable again: caching resumes by itself.
    fs.remount("rw");
    f.eval(4);
    f.eval(4);
    assert_eq!(calls.load(Ordering::SeqCst), before + 4);
}

/// A private moto server on a free loopback port.
#[cfg(all(feature = "s3", feature = "testkit"))]
struct Moto {
    cmd: String,
    port: u16,
    child: Option<std::process::Child>,
    /// Whether it checks the credentials of requests against its own (empty) IAM users.
    authenticating: bool,
}

#[cfg(all(feature = "s3", feature = "testkit"))]
impl Moto {
    fn start(cmd: &str) -> Moto {
        Moto::start_with(cmd, false)
    }

    /// The location of a store in its bucket.
    fn url(&self) -> String {
        format!(
            "s3://faults/run?endpoint=http://127.0.0.1:{}&allow_http=true",
            self.port
        )
    }

    /// A moto server that refuses every request: it knows no credentials.
    fn start_authenticating(cmd: &str) -> Moto {
        Moto::start_with(cmd, true)
    }

    fn start_with(cmd: &str, authenticating: bool) -> Moto {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let mut moto = Moto {
            cmd: cmd.to_owned(),
            port,
            child: None,
            authenticating,
        };
        moto.restart();
        moto
    }

    fn restart(&mut self) {
        let mut parts = self.cmd.split_whitespace();
        let mut command = Command::new(parts.next().unwrap());
        command
            .args(parts)
            .args(["-H", "127.0.0.1", "-p", &self.port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if self.authenticating {
            // moto checks credentials from its first request on.
            command.env("INITIAL_NO_AUTH_ACTION_COUNT", "0");
        }
        let child = command.spawn().expect("starting moto");
        self.child = Some(child);
        // An authenticating server answers with a refusal: any answer says it is up.
        let refusal_too = if self.authenticating {
            "except u.HTTPError: pass"
        } else {
            "except u.HTTPError: raise"
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            // An unsigned PUT creates the bucket, and says the server answers.
            let answered = Command::new("python3")
                .args([
                    "-c",
                    &format!(
                        "import urllib.request as u, urllib.error\ntry: u.urlopen(u.Request('http://127.0.0.1:{}/faults', method='PUT'), timeout=2)\n{refusal_too}",
                        self.port
                    ),
                ])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if answered {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "moto did not start");
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[cfg(all(feature = "s3", feature = "testkit"))]
impl Drop for Moto {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `x * x`, counting its calls in `calls`.
#[cfg(all(feature = "s3", feature = "testkit"))]
fn counting_square(calls: &AtomicUsize) -> impl Fn(u64) -> u64 + Sync + '_ {
    move |x| {
        calls.fetch_add(1, Ordering::SeqCst);
        x * x
    }
}

/// Credentials the store does not know meet every request: calls compute their values, and
/// the user is told once, not once a call.
#[cfg(all(feature = "s3", feature = "testkit"))]
#[test]
fn s3_with_unknown_credentials_is_told_once() {
    let Some(cmd) = cachette::plugin::testkit::server_from_env("CACHETTE_TEST_MOTO_CMD") else {
        return;
    };
    let moto = Moto::start_authenticating(&cmd);
    let url = moto.url();
    let (memory, warnings) = memory(&url);
    let calls = AtomicUsize::new(0);
    let square = counting_square(&calls);
    let f = memory.cache_capturing(&square).name("faults::square");
    for x in 0..12 {
        assert_eq!(f.eval(x % 3), (x % 3) * (x % 3));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 12, "nothing is stored");
    let warnings = warnings.lock().unwrap();
    let warning = cachette::plugin::testkit::the_warning_of_a_refusing_store(&warnings);
    assert!(
        warning.contains("does not accept the credentials (InvalidAccessKeyId)"),
        "{warning}"
    );
}

#[cfg(all(feature = "s3", feature = "testkit"))]
#[test]
fn s3_stopped_mid_run_then_back() {
    let Some(cmd) = cachette::plugin::testkit::server_from_env("CACHETTE_TEST_MOTO_CMD") else {
        return;
    };
    let mut moto = Moto::start(&cmd);
    let url = moto.url();
    let (memory, warnings) = memory(&url);
    let calls = AtomicUsize::new(0);
    let square = counting_square(&calls);
    let f = memory.cache_capturing(&square).name("faults::square");
    assert_eq!(f.eval(3), 9);
    assert_eq!(f.eval(3), 9);
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    moto.stop();
    for x in [3, 4, 3] {
        let started = std::time::Instant::now();
        assert_eq!(f.eval(x), x * x, "the right value while S3 is down");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    }
    assert!(
        !warnings.lock().unwrap().is_empty(),
        "the outage is reported"
    );
    // Strict mode: the outage is the caller's error.
    let strict = Memory::builder().url(&url).strict(true).build().unwrap();
    let err = strict
        .cache_capturing(&square)
        .name("faults::square")
        .try_eval(3)
        .unwrap_err();
    assert!(
        matches!(&err, cachette::Error::Backend(e) if e.kind().is_usually_temporary()),
        "{err:?}"
    );

    // Back (empty: moto keeps nothing): caching resumes by itself.
    moto.restart();
    let before = calls.load(Ordering::SeqCst);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        f.eval(5);
        if f.check_call_in_cache(&5) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "caching did not resume"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let stored = calls.load(Ordering::SeqCst);
    assert_eq!(f.eval(5), 25);
    assert_eq!(calls.load(Ordering::SeqCst), stored, "a hit again");
    assert!(stored > before);
}
