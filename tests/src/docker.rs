//! Docker for tests, through the `docker` CLI: a locally built busybox
//! image (no registry is reachable, so nothing can be pulled), containers
//! and networks, each removed when its handle drops, also on failure.
//! Everything carries the label `edge-test` so `scripts/check-clean.sh`
//! can tell test leftovers apart.
//!
//! Tests share one Docker engine and run in parallel: give every container
//! and network a unique name ([`unique`]) and look only at your own.

use std::os::unix::fs::symlink;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::HarnessError;

/// The label on everything a test creates.
pub const LABEL: &str = "edge-test";

/// Where Debian's busybox-static puts its binary.
const BUSYBOX: &str = "/bin/busybox";

/// Applets the image links, enough for `httpd`, `nc`, health checks and
/// `docker exec` scripting.
const APPLETS: &[&str] = &[
    "sh", "httpd", "nc", "sleep", "test", "touch", "rm", "cat", "echo", "ls", "wget", "true", "false", "mkdir",
    "printf",
];

/// The CGI script at `/cgi-bin/ok` (shared with router/bench/deploy.sh).
const CGI_OK: &str = include_str!("cgi-ok.sh");

/// A name no other test or run uses: `edge-t-<what>-<pid>-<n>`.
pub fn unique(what: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("edge-t-{what}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// Runs `docker args...` and returns its trimmed stdout, or an error with
/// its stderr.
pub fn docker(args: &[&str]) -> Result<String, HarnessError> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .map_err(|source| HarnessError::Io { what: "run docker".into(), source })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(HarnessError::NotReady(format!(
            "docker {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// A busybox image imported from a rootfs tarball, tagged by the
/// busybox binary's content and this process, removed on drop.
pub struct TestImage {
    tag: String,
}

impl TestImage {
    /// Builds the image: `/bin/busybox` plus applet links, and `/www/index.html`
    /// (`hello from edge`) for `httpd -h /www`, and `/www/cgi-bin/ok`, which
    /// answers any method (POST included, which static files refuse) with
    /// `ok <hostname>`.
    pub fn build() -> Result<Self, HarnessError> {
        let io = |what: &str| {
            let what = what.to_string();
            move |source| HarnessError::Io { what, source }
        };
        let bin = std::fs::read(BUSYBOX).map_err(io("read /bin/busybox (apt install busybox-static)"))?;
        let dir = tempfile::Builder::new().prefix("edge-image-").tempdir().map_err(io("tempdir"))?;
        let root = dir.path();
        std::fs::create_dir_all(root.join("bin")).map_err(io("mkdir bin"))?;
        std::fs::create_dir_all(root.join("www")).map_err(io("mkdir www"))?;
        std::fs::create_dir_all(root.join("tmp")).map_err(io("mkdir tmp"))?;
        std::fs::write(root.join("bin/busybox"), &bin).map_err(io("copy busybox"))?;
        std::fs::set_permissions(root.join("bin/busybox"), std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .map_err(io("chmod busybox"))?;
        for applet in APPLETS {
            symlink("busybox", root.join("bin").join(applet)).map_err(io("symlink applet"))?;
        }
        std::fs::write(root.join("www/index.html"), "hello from edge\n").map_err(io("index.html"))?;
        std::fs::create_dir_all(root.join("www/cgi-bin")).map_err(io("mkdir cgi-bin"))?;
        std::fs::write(root.join("www/cgi-bin/ok"), CGI_OK).map_err(io("cgi-bin/ok"))?;
        std::fs::set_permissions(root.join("www/cgi-bin/ok"), std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .map_err(io("chmod cgi-bin/ok"))?;
        let tag = format!("edge-test-busybox:{:016x}-{}", fnv(&bin), unique("img").replace("edge-t-img-", ""));

        let tar = Command::new("tar")
            .args(["-C"])
            .arg(root)
            .args(["-cf", "-", "."])
            .stdout(Stdio::piped())
            .spawn()
            .map_err(io("spawn tar"))?;
        let tar_out = tar.stdout.ok_or_else(|| HarnessError::NotReady("tar: no stdout".into()))?;
        let out = Command::new("docker")
            .args(["import", "--change", &format!("LABEL {LABEL}=true"), "--change", "ENV PATH=/bin", "-", &tag])
            .stdin(tar_out)
            .output()
            .map_err(io("docker import"))?;
        if !out.status.success() {
            return Err(HarnessError::NotReady(format!("docker import: {}", String::from_utf8_lossy(&out.stderr))));
        }
        Ok(TestImage { tag })
    }

    /// The `name:tag` to run.
    pub fn tag(&self) -> &str {
        &self.tag
    }
}

impl Drop for TestImage {
    fn drop(&mut self) {
        let _ = docker(&["rmi", "--force", &self.tag]);
    }
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// A container started by a test, removed (`rm -f`) on drop.
pub struct Container {
    id: String,
    name: String,
}

impl Container {
    /// `docker run -d --name <name> --label edge-test <args...>`: `args` are
    /// the options, the image and the command.
    pub fn run(name: &str, args: &[&str]) -> Result<Self, HarnessError> {
        let label = format!("{LABEL}=true");
        let mut full = vec!["run", "-d", "--name", name, "--label", &label];
        full.extend_from_slice(args);
        let id = docker(&full)?;
        Ok(Container { id, name: name.to_string() })
    }

    /// Like [`run`](Self::run) but only `docker create`: start it with
    /// [`start`](Self::start), e.g. to time the start.
    pub fn create(name: &str, args: &[&str]) -> Result<Self, HarnessError> {
        let label = format!("{LABEL}=true");
        let mut full = vec!["create", "--name", name, "--label", &label];
        full.extend_from_slice(args);
        let id = docker(&full)?;
        Ok(Container { id, name: name.to_string() })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn start(&self) -> Result<(), HarnessError> {
        docker(&["start", &self.id]).map(drop)
    }

    /// `docker stop -t 1` (busybox as PID 1 ignores SIGTERM).
    pub fn stop(&self) -> Result<(), HarnessError> {
        docker(&["stop", "-t", "1", &self.id]).map(drop)
    }

    pub fn kill(&self) -> Result<(), HarnessError> {
        docker(&["kill", &self.id]).map(drop)
    }

    /// `docker rm -f` now.
    pub fn remove(&self) -> Result<(), HarnessError> {
        docker(&["rm", "-f", &self.id]).map(drop)
    }

    pub fn rename(&mut self, new_name: &str) -> Result<(), HarnessError> {
        docker(&["rename", &self.id, new_name])?;
        self.name = new_name.to_string();
        Ok(())
    }

    /// `docker exec <id> args...`
    pub fn exec(&self, args: &[&str]) -> Result<String, HarnessError> {
        let mut full = vec!["exec", self.id.as_str()];
        full.extend_from_slice(args);
        docker(&full)
    }

    /// `docker inspect -f <template>`
    pub fn inspect(&self, template: &str) -> Result<String, HarnessError> {
        docker(&["inspect", "-f", template, &self.id])
    }

    /// The host port `container_port/tcp` is published on.
    pub fn host_port(&self, container_port: u16) -> Result<u16, HarnessError> {
        let t = format!("{{{{(index (index .NetworkSettings.Ports \"{container_port}/tcp\") 0).HostPort}}}}");
        let s = self.inspect(&t)?;
        s.parse().map_err(|_| HarnessError::NotReady(format!("no host port for {container_port}/tcp: {s:?}")))
    }

    /// The container's IPv4 address on `network`.
    pub fn ip_on(&self, network: &str) -> Result<String, HarnessError> {
        self.inspect(&format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}"))
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", "-v", &self.id]);
    }
}

/// A user-defined bridge network, removed on drop.
pub struct Network {
    name: String,
}

impl Network {
    pub fn create(name: &str) -> Result<Self, HarnessError> {
        docker(&["network", "create", "--label", &format!("{LABEL}=true"), name])?;
        Ok(Network { name: name.to_string() })
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        let _ = docker(&["network", "rm", &self.name]);
    }
}
