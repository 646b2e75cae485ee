//! Network namespaces for tests that need real links, real packets and more
//! than one host: a bridge in its own namespace, node namespaces and a client
//! namespace joined to it by veth pairs. Namespace names are global and tests
//! run in parallel processes, so every name carries the test's pid and a
//! sequence number; everything is deleted when its handle drops, panics
//! included. The veth pairs are created inside the bridge namespace, so
//! nothing touches the host's own network.

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::HarnessError;

static SEQ: AtomicU32 = AtomicU32::new(0);

/// One named network namespace, deleted on drop.
pub struct Netns {
    name: String,
}

fn run(cmd: &mut Command) -> Result<String, HarnessError> {
    let out = cmd.output().map_err(|source| HarnessError::Io { what: format!("run {cmd:?}"), source })?;
    if !out.status.success() {
        return Err(HarnessError::NotReady(format!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim())));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Netns {
    /// Creates `name` (which must start with `edge-`, see check-clean.sh)
    /// with loopback up.
    pub fn create(name: &str) -> Result<Netns, HarnessError> {
        run(Command::new("ip").args(["netns", "add", name]))?;
        let ns = Netns { name: name.to_string() };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n NAME args...`
    pub fn ip(&self, args: &[&str]) -> Result<String, HarnessError> {
        run(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// A command that runs `program` inside the namespace (`ip netns exec`
    /// execs it, so the child's pid is the program's own).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Runs `program args...` inside the namespace and returns its stdout.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<String, HarnessError> {
        run(self.command(program).args(args))
    }

    /// Whether `addr` is configured on any interface of the namespace.
    pub fn has_addr(&self, addr: Ipv4Addr) -> bool {
        let needle = format!("inet {addr}/");
        self.ip(&["-4", "addr", "show"]).map(|s| s.contains(&needle)).unwrap_or(false)
    }

    /// Runs `f` on a thread that has entered this namespace, so sockets it
    /// opens live there (setns affects the calling thread only).
    pub fn enter<T, F>(&self, f: F) -> Result<T, HarnessError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let path = format!("/run/netns/{}", self.name);
        let file = File::open(&path).map_err(|source| HarnessError::Io { what: format!("open {path}"), source })?;
        std::thread::spawn(move || {
            // SAFETY: setns on a descriptor we hold open; affects this thread only.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            if rc != 0 {
                return Err(HarnessError::Io { what: "setns".into(), source: std::io::Error::last_os_error() });
            }
            Ok(f())
        })
        .join()
        .map_err(|_| HarnessError::NotReady("thread inside the namespace panicked".into()))?
    }

    /// Like [`Netns::enter`] without waiting: for a poller that runs
    /// alongside the test. The closure's result comes back from `join`.
    pub fn spawn_inside<T, F>(&self, f: F) -> Result<std::thread::JoinHandle<T>, HarnessError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let path = format!("/run/netns/{}", self.name);
        let file = File::open(&path).map_err(|source| HarnessError::Io { what: format!("open {path}"), source })?;
        Ok(std::thread::spawn(move || {
            // SAFETY: as in `enter`.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            drop(file);
            f()
        }))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace deletes its interfaces (and the veth peers
        // in other namespaces) once no process is left inside.
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}

/// A layer-2 segment: `nodes` hosts and one client on a bridge, addresses
/// 10.77.0.1.. for nodes and 10.77.0.100 for the client, each on `eth0`.
/// Node namespaces get `ip_forward=0` so a node that lost an address never
/// forwards to the new owner and hides an ARP problem.
pub struct Topology {
    // Field order is drop order: hosts first, the bridge last.
    pub nodes: Vec<Netns>,
    pub client: Netns,
    pub bridge: Netns,
}

impl Topology {
    pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 100);
    pub const IFACE: &'static str = "eth0";

    pub fn node_ip(i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, 0, (i + 1) as u8)
    }

    pub fn new(nodes: usize) -> Result<Topology, HarnessError> {
        let prefix = format!("edge-{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed));
        let bridge = Netns::create(&format!("{prefix}-br"))?;
        bridge.ip(&["link", "add", "br0", "type", "bridge"])?;
        bridge.ip(&["link", "set", "br0", "up"])?;
        let client = Netns::create(&format!("{prefix}-cl"))?;
        let mut topo = Topology { nodes: Vec::new(), client, bridge };
        topo.attach_client()?;
        for i in 0..nodes {
            let ns = Netns::create(&format!("{prefix}-n{i}"))?;
            topo.attach(&ns, &format!("v{i}"), Self::node_ip(i))?;
            ns.exec("sysctl", &["-qw", "net.ipv4.ip_forward=0"])?;
            topo.nodes.push(ns);
        }
        Ok(topo)
    }

    fn attach_client(&self) -> Result<(), HarnessError> {
        self.attach(&self.client, "vc", Self::CLIENT_IP)
    }

    fn attach(&self, ns: &Netns, port: &str, ip: Ipv4Addr) -> Result<(), HarnessError> {
        self.bridge.ip(&["link", "add", port, "type", "veth", "peer", "name", Self::IFACE, "netns", ns.name()])?;
        self.bridge.ip(&["link", "set", port, "master", "br0", "up"])?;
        ns.ip(&["addr", "add", &format!("{ip}/24"), "dev", Self::IFACE])?;
        ns.ip(&["link", "set", Self::IFACE, "up"])?;
        Ok(())
    }

    /// Indexes of the nodes that have `addr` configured.
    pub fn holders(&self, addr: Ipv4Addr) -> Vec<usize> {
        self.nodes.iter().enumerate().filter(|(_, n)| n.has_addr(addr)).map(|(i, _)| i).collect()
    }
}
