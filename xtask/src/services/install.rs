//! Installing what the servers need: `redis-server` from the system's packages and
//! `moto[server]` from PyPI, each step bounded in time.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use super::{INSTALL_TIMEOUT, POLL, sys};

/// Runs `cmd` to completion, killing it after `timeout`.
pub(crate) fn run_bounded(cmd: &mut Command, timeout: Duration, what: &str) -> Result<ExitStatus> {
    let mut child = cmd
        .stdin(Stdio::null())
        .spawn()
        .with_context(|| format!("running {what}"))?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{what} did not finish within {}s", timeout.as_secs());
        }
        sleep(POLL);
    }
}

/// Runs an installer command with its output on our stderr (stdout may be `eval`ed).
pub(super) fn install_step(cmd: &mut Command, what: &str) -> Result<bool> {
    cmd.stdout(Stdio::from(io::stderr()))
        .stderr(Stdio::inherit());
    Ok(run_bounded(cmd, INSTALL_TIMEOUT, what)?.success())
}

pub(super) fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

pub(super) fn ensure_redis() -> Result<(PathBuf, PathBuf)> {
    if let (Some(server), Some(cli)) = (which("redis-server"), which("redis-cli")) {
        return Ok((server, cli));
    }
    eprintln!("services: redis-server/redis-cli not found; installing the redis-server package");
    apt_install(&["redis-server"])?;
    match (which("redis-server"), which("redis-cli")) {
        (Some(server), Some(cli)) => Ok((server, cli)),
        _ => bail!("redis-server or redis-cli still not on PATH after installing redis-server"),
    }
}

pub(super) fn apt_install(packages: &[&str]) -> Result<()> {
    let manual = format!("apt-get install -y {}", packages.join(" "));
    if which("apt-get").is_none() {
        bail!(
            "apt-get not found; install these yourself: {}",
            packages.join(" ")
        );
    }
    let sudo = sys::geteuid() != 0;
    if sudo && which("sudo").is_none() {
        bail!("not root and no sudo; run as root: {manual}");
    }
    let apt = |args: &[&str]| {
        let mut cmd = if sudo {
            let mut cmd = Command::new("sudo");
            cmd.args(["-n", "env", "DEBIAN_FRONTEND=noninteractive", "apt-get"]);
            cmd
        } else {
            let mut cmd = Command::new("apt-get");
            cmd.env("DEBIAN_FRONTEND", "noninteractive");
            cmd
        };
        cmd.args(["-q", "-o", "DPkg::Lock::Timeout=120"]).args(args);
        cmd
    };
    ensure!(
        install_step(&mut apt(&["update"]), "apt-get update")?,
        "`apt-get update` failed; try by hand: {manual}"
    );
    let mut install = apt(&["install", "-y", "--no-install-recommends"]);
    install.args(packages);
    ensure!(
        install_step(&mut install, "apt-get install")?,
        "`{manual}` failed"
    );
    Ok(())
}

pub(super) fn python_ok(args: &[&str]) -> bool {
    let mut cmd = Command::new("python3");
    cmd.args(args).stdout(Stdio::null()).stderr(Stdio::null());
    run_bounded(&mut cmd, Duration::from_secs(120), "python3").is_ok_and(|s| s.success())
}

pub(super) fn ensure_moto() -> Result<()> {
    const IMPORT: [&str; 2] = ["-c", "import moto.server, flask"];
    if which("python3").is_none() {
        eprintln!("services: python3 not found; installing it");
        apt_install(&["python3", "python3-pip"])?;
    }
    if python_ok(&IMPORT) {
        return Ok(());
    }
    eprintln!("services: moto is not installed; installing 'moto[server]' with pip");
    if !python_ok(&["-m", "pip", "--version"]) {
        apt_install(&["python3-pip"])?;
    }
    let pip = |extra: &[&str]| {
        let mut cmd = Command::new("python3");
        cmd.args(["-m", "pip", "install", "--quiet"])
            .args(extra)
            .arg("moto[server]");
        cmd
    };
    if !install_step(&mut pip(&[]), "pip install")? {
        eprintln!("services: retrying with --break-system-packages (PEP 668 system Python)");
        ensure!(
            install_step(&mut pip(&["--break-system-packages"]), "pip install")?,
            "`python3 -m pip install 'moto[server]'` failed"
        );
    }
    ensure!(
        python_ok(&IMPORT),
        "installed moto, but `python3 -c 'import moto.server'` still fails"
    );
    Ok(())
}
