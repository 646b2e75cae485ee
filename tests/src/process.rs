//! Child processes owned by a test: spawned in their own process group,
//! killed with the test process, output captured to a file.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::HarnessError;

/// Path of one of this workspace's binaries in the same target directory
/// and profile as the running test (`target/debug/deps/<test>` ->
/// `target/debug/<name>`).
pub fn bin_path(name: &str) -> Result<PathBuf, HarnessError> {
    let exe = std::env::current_exe().map_err(|source| HarnessError::Io { what: "current_exe".into(), source })?;
    let profile_dir = exe
        .parent()
        .and_then(|deps| if deps.ends_with("deps") { deps.parent() } else { Some(deps) })
        .ok_or_else(|| HarnessError::MissingBinary(name.into()))?;
    let path = profile_dir.join(name);
    if path.is_file() { Ok(path) } else { Err(HarnessError::MissingBinary(path.display().to_string())) }
}

/// Spawns `cmd` so that it cannot outlive the test: its own process group
/// (so a kill reaches anything it starts) and `SIGKILL` when the spawning
/// thread's process dies.
pub(crate) fn spawn_owned(cmd: &mut Command, log: &Path) -> Result<Child, HarnessError> {
    let out =
        File::create(log).map_err(|source| HarnessError::Io { what: format!("create {}", log.display()), source })?;
    let err = out.try_clone().map_err(|source| HarnessError::Io { what: "dup log".into(), source })?;
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setpgid(0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn().map_err(|source| HarnessError::Io { what: format!("spawn {:?}", cmd.get_program()), source })
}

/// Sends `sig` to the process group of `child`.
pub(crate) fn signal_group(child: &Child, sig: i32) {
    // SAFETY: plain syscall on a pid we own.
    unsafe {
        libc::kill(-(child.id() as i32), sig);
    }
}

/// Waits up to `timeout` for `child` to exit.
pub(crate) fn wait_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return Some(st),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => return None,
        }
    }
}

/// Kills the group and reaps the child.
pub(crate) fn kill_and_reap(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        signal_group(child, libc::SIGKILL);
        let _ = child.wait();
    } else {
        // The leader is gone; make sure nothing else in its group lingers.
        signal_group(child, libc::SIGKILL);
    }
}

/// The last `max` bytes of a log file, for failure reports.
pub(crate) fn log_tail(path: &Path, max: usize) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let start = s.len().saturating_sub(max);
    let start = (start..s.len()).find(|i| s.is_char_boundary(*i)).unwrap_or(s.len());
    s[start..].to_string()
}

/// One of this project's daemons, running for a test.
pub struct Daemon {
    name: String,
    child: Option<Child>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Daemon {
    /// Starts workspace binary `name` with `args` and extra environment.
    /// `RUST_LOG` defaults to `debug` for the project's own crates so the
    /// captured log explains a failure.
    pub fn spawn(name: &str, args: &[String], envs: &[(&str, &str)]) -> Result<Self, HarnessError> {
        let mut cmd = Command::new(bin_path(name)?);
        cmd.args(args).env(
            "RUST_LOG",
            std::env::var("RUST_LOG")
                .unwrap_or_else(|_| "info,router=debug,registrar=debug,vipd=debug,consul=debug".into()),
        );
        for (k, v) in envs {
            cmd.env(k, v);
        }
        Self::spawn_command(name, cmd)
    }

    /// Starts a prepared command (e.g. a daemon wrapped in `ip netns exec`,
    /// or a third-party peer like keepalived) with the same guarantees:
    /// own process group, killed with the test, output captured under `name`.
    pub fn spawn_command(name: &str, mut cmd: Command) -> Result<Self, HarnessError> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("edge-{name}-"))
            .tempdir()
            .map_err(|source| HarnessError::Io { what: "tempdir".into(), source })?;
        let log = dir.path().join(format!("{name}.log"));
        let child = spawn_owned(&mut cmd, &log)?;
        Ok(Daemon { name: name.to_string(), child: Some(child), log, _dir: dir })
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends a signal (e.g. `libc::SIGTERM`) to the daemon's process group.
    pub fn signal(&self, sig: i32) {
        if let Some(c) = &self.child {
            signal_group(c, sig);
        }
    }

    /// Waits up to `timeout` for the daemon to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.child.as_mut().and_then(|c| wait_exit(c, timeout))
    }

    /// `SIGKILL` now (a crash, as far as the daemon can tell).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill_and_reap(&mut c);
        }
    }

    /// Everything the daemon has printed so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill_and_reap(&mut c);
        }
        if std::thread::panicking() {
            eprintln!("---- {} log (tail) ----\n{}", self.name, log_tail(&self.log, 8000));
        }
    }
}
