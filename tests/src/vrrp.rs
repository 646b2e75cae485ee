//! The parts of a VRRP group test on a [`Topology`]: vipd and keepalived
//! started inside node namespaces, a tiny HTTP server per node that answers
//! with the node's name and a health file the test can take away, HTTP from
//! the client namespace, and hand-made VRRP datagrams injected on the
//! segment. The datagrams are built here from the RFC layout, independently
//! of vipd's encoder, so the two check each other.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use crate::HarnessError;
use crate::netns::{Netns, Topology};
use crate::process::{Daemon, bin_path};

/// The port the per-node HTTP server listens on (inside each namespace).
pub const HTTP_PORT: u16 = 8080;

fn tempdir(prefix: &str) -> Result<tempfile::TempDir, HarnessError> {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .map_err(|source| HarnessError::Io { what: "tempdir".into(), source })
}

fn write(path: PathBuf, text: &str) -> Result<(), HarnessError> {
    std::fs::write(&path, text).map_err(|source| HarnessError::Io { what: format!("write {}", path.display()), source })
}

/// Starts vipd in node `i` on `eth0`, with `extra` flags after the common ones.
pub fn spawn_vipd(
    topo: &Topology,
    i: usize,
    vip: Ipv4Addr,
    vrid: u8,
    priority: u8,
    advert_interval: &str,
    extra: &[&str],
) -> Result<Daemon, HarnessError> {
    let mut cmd = topo.nodes[i].command(bin_path("vipd")?);
    cmd.args(["--interface", Topology::IFACE, "--vip", &vip.to_string(), "--vrid", &vrid.to_string()])
        .args(["--priority", &priority.to_string(), "--advert-interval", advert_interval])
        .args(extra)
        .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info,vipd=debug".into()));
    Daemon::spawn_command(&format!("vipd-n{i}"), cmd)
}

/// keepalived (Debian's) in node `i`, VRRP only, in the foreground, with its
/// config and pid files in a temp dir. Killed with the handle.
pub struct Keepalived {
    pub daemon: Daemon,
    _dir: tempfile::TempDir,
}

impl Keepalived {
    /// `advert_int` in keepalived's syntax (seconds, `0.1` allowed with v3).
    pub fn spawn(
        topo: &Topology,
        i: usize,
        vip: Ipv4Addr,
        vrid: u8,
        priority: u8,
        advert_int: &str,
    ) -> Result<Keepalived, HarnessError> {
        let dir = tempdir("edge-keepalived-")?;
        let conf = dir.path().join("keepalived.conf");
        write(
            conf.clone(),
            &format!(
                "global_defs {{\n  router_id edge-n{i}\n  vrrp_version 3\n}}\n\
                 vrrp_instance VI_{vrid} {{\n  state BACKUP\n  interface {iface}\n  virtual_router_id {vrid}\n  \
                 priority {priority}\n  advert_int {advert_int}\n  virtual_ipaddress {{\n    {vip}/32 dev {iface}\n  }}\n}}\n",
                iface = Topology::IFACE
            ),
        )?;
        let d = dir.path();
        let mut cmd = topo.nodes[i].command("/usr/sbin/keepalived");
        cmd.args(["-n", "-l", "-D", "-P", "-f"])
            .arg(&conf)
            .arg("-p")
            .arg(d.join("keepalived.pid"))
            .arg("-r")
            .arg(d.join("vrrp.pid"))
            .arg("-c")
            .arg(d.join("checkers.pid"));
        let daemon = Daemon::spawn_command(&format!("keepalived-n{i}"), cmd)?;
        Ok(Keepalived { daemon, _dir: dir })
    }
}

/// `python3 -m http.server` with a listen backlog of 128 instead of
/// socketserver's 5 (after a failover the queued clients arrive at once, and
/// SYNs dropped by a full backlog are retried only after a second) and no
/// log line per request. Arguments: directory, port.
const SERVE_DIR: &str = "import functools, http.server, sys
class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer.request_queue_size = 128
handler = functools.partial(Quiet, directory=sys.argv[1])
http.server.ThreadingHTTPServer(('0.0.0.0', int(sys.argv[2])), handler).serve_forever()
";

/// `python3 -m http.server` in node `i`: `/name` answers the node's name,
/// `/health` answers 200 while the test leaves the health file in place.
pub struct HttpServer {
    pub daemon: Daemon,
    dir: tempfile::TempDir,
}

impl HttpServer {
    pub fn spawn(topo: &Topology, i: usize) -> Result<HttpServer, HarnessError> {
        let dir = tempdir("edge-http-")?;
        write(dir.path().join("name"), &format!("n{i}"))?;
        write(dir.path().join("health"), "ok")?;
        let mut cmd = topo.nodes[i].command("python3");
        cmd.args(["-c", SERVE_DIR]).arg(dir.path()).arg(HTTP_PORT.to_string());
        let daemon = Daemon::spawn_command(&format!("http-n{i}"), cmd)?;
        Ok(HttpServer { daemon, dir })
    }

    /// Makes `/health` answer 200 (true) or 404 (false).
    pub fn set_healthy(&self, healthy: bool) -> Result<(), HarnessError> {
        let path = self.dir.path().join("health");
        if healthy {
            write(path, "ok")
        } else {
            std::fs::remove_file(&path)
                .map_err(|source| HarnessError::Io { what: format!("remove {}", path.display()), source })
        }
    }

    /// The health URL as seen from inside the node.
    pub fn health_url() -> String {
        format!("http://127.0.0.1:{HTTP_PORT}/health")
    }
}

/// One `GET path` to `ip:port`, with short timeouts; the body on a 200.
/// Must run on a thread inside the client namespace (see [`Netns::enter`]).
pub fn http_get(ip: Ipv4Addr, port: u16, path: &str, timeout: Duration) -> Option<String> {
    let host = ip.to_string();
    http(ip, port, "GET", path, &host, "", timeout).ok().filter(|(status, _)| *status == 200).map(|(_, body)| body)
}

/// One HTTP/1.0 request to `ip:port` with `Host: host` and `body`; the
/// status and body of the answer, or why there was none (`connect: ...`,
/// `read: ...`, `no HTTP head`). Runs on the calling thread, so from a
/// thread inside a namespace it reaches that namespace's addresses.
pub fn http(
    ip: Ipv4Addr,
    port: u16,
    method: &str,
    path: &str,
    host: &str,
    body: &str,
    timeout: Duration,
) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect_timeout(&SocketAddrV4::new(ip, port).into(), timeout)
        .map_err(|e| format!("connect: {}", e.kind()))?;
    let _ = s.set_read_timeout(Some(timeout));
    let _ = s.set_write_timeout(Some(timeout));
    write!(s, "{method} {path} HTTP/1.0\r\nHost: {host}\r\nContent-Length: {}\r\n\r\n{body}", body.len())
        .map_err(|e| format!("write: {}", e.kind()))?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).map_err(|e| format!("read: {}", e.kind()))?;
    let (head, body) = resp.split_once("\r\n\r\n").ok_or("no HTTP head")?;
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or("no status")?;
    Ok((status, body.to_string()))
}

/// Which node answers `GET /name` on `vip` from the client namespace.
pub fn who_answers(client: &Netns, vip: Ipv4Addr) -> Option<String> {
    client.enter(move || http_get(vip, HTTP_PORT, "/name", Duration::from_millis(300))).ok().flatten()
}

/// Asserts that `node` answers on `vip` from the client namespace within
/// `within`: the VIP is not only configured on the right node but reaches it
/// (ARP caches updated).
pub fn assert_answers(topo: &Topology, vip: Ipv4Addr, node: &str, within: Duration) {
    let got = crate::wait::poll(within, || who_answers(&topo.client, vip).filter(|n| n == node));
    assert_eq!(got.as_deref(), Some(node), "the client reaches {node} through the VIP within {within:?}");
}

/// Fields of a hand-made advert; `Default` is a valid one.
#[derive(Debug, Clone)]
pub struct Craft {
    pub src: Ipv4Addr,
    pub vrid: u8,
    pub priority: u8,
    pub interval_cs: u16,
    pub vip: Ipv4Addr,
    pub ttl: u8,
    pub version: u8,
    /// Flip a checksum bit after computing it.
    pub corrupt_checksum: bool,
    /// Cut the datagram (IP length adjusted) to this many VRRP bytes.
    pub truncate_vrrp: Option<usize>,
}

impl Default for Craft {
    fn default() -> Self {
        Craft {
            src: Topology::CLIENT_IP,
            vrid: 1,
            priority: 100,
            interval_cs: 10,
            vip: Ipv4Addr::new(10, 77, 0, 50),
            ttl: 255,
            version: 3,
            corrupt_checksum: false,
            truncate_vrrp: None,
        }
    }
}

fn inet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data.chunks(2).map(|c| u32::from(c[0]) << 8 | u32::from(*c.get(1).unwrap_or(&0))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

impl Craft {
    /// The whole IPv4 datagram to 224.0.0.18, checksum with the pseudo-header.
    pub fn datagram(&self) -> Vec<u8> {
        let dst = Ipv4Addr::new(224, 0, 0, 18);
        let mut vrrp = vec![(self.version << 4) | 1, self.vrid, self.priority, 1];
        vrrp.extend_from_slice(&(self.interval_cs & 0x0fff).to_be_bytes());
        vrrp.extend_from_slice(&[0, 0]);
        vrrp.extend_from_slice(&self.vip.octets());
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&self.src.octets());
        pseudo.extend_from_slice(&dst.octets());
        pseudo.extend_from_slice(&[0, 112]);
        pseudo.extend_from_slice(&(vrrp.len() as u16).to_be_bytes());
        pseudo.extend_from_slice(&vrrp);
        let mut c = inet_checksum(&pseudo);
        if self.corrupt_checksum {
            c ^= 0x0100;
        }
        vrrp[6..8].copy_from_slice(&c.to_be_bytes());
        if let Some(n) = self.truncate_vrrp {
            vrrp.truncate(n);
        }
        let total = (20 + vrrp.len()) as u16;
        let mut d = vec![0x45, 0xc0];
        d.extend_from_slice(&total.to_be_bytes());
        d.extend_from_slice(&[0, 0, 0, 0, self.ttl, 112, 0, 0]);
        d.extend_from_slice(&self.src.octets());
        d.extend_from_slice(&dst.octets());
        d.extend_from_slice(&vrrp);
        d
    }
}

/// Sends raw IPv4 datagrams (header included) out of `eth0` of `ns` to
/// 224.0.0.18, as a misbehaving host on the segment would.
pub fn inject(ns: &Netns, datagrams: Vec<Vec<u8>>) -> Result<(), HarnessError> {
    ns.enter(move || -> std::io::Result<()> {
        use socket2::{Domain, Protocol, SockAddr, Socket, Type};
        let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(libc::IPPROTO_RAW)))?;
        s.bind_device(Some(Topology::IFACE.as_bytes()))?;
        s.set_header_included_v4(true)?;
        let dst = SockAddr::from(SocketAddrV4::new(Ipv4Addr::new(224, 0, 0, 18), 0));
        for d in &datagrams {
            s.send_to(d, &dst)?;
        }
        Ok(())
    })?
    .map_err(|source| HarnessError::Io { what: "inject datagrams".into(), source })
}

/// Polls every 10 ms until, among the nodes in `live`, exactly `expected`
/// holds `vip`; returns how long that took, or the last holders seen.
pub fn wait_sole_holder(
    topo: &Topology,
    vip: Ipv4Addr,
    live: &[usize],
    expected: usize,
    timeout: Duration,
) -> Result<Duration, Vec<usize>> {
    let start = std::time::Instant::now();
    loop {
        let holders: Vec<usize> = topo.holders(vip).into_iter().filter(|i| live.contains(i)).collect();
        if holders == [expected] {
            return Ok(start.elapsed());
        }
        if start.elapsed() > timeout {
            return Err(holders);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Checks for `period` that `expected` stays the only holder among `live`.
pub fn sole_holder_for(
    topo: &Topology,
    vip: Ipv4Addr,
    live: &[usize],
    expected: usize,
    period: Duration,
) -> Result<(), Vec<usize>> {
    let start = std::time::Instant::now();
    while start.elapsed() < period {
        let holders: Vec<usize> = topo.holders(vip).into_iter().filter(|i| live.contains(i)).collect();
        if holders != [expected] {
            return Err(holders);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Master_Down_Interval (RFC 5798) for a backup of `priority`.
pub fn master_down_interval(priority: u8, advert: Duration) -> Duration {
    advert * 3 + advert * (256 - u32::from(priority)) / 256
}
