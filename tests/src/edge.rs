//! The edge as one system, in network namespaces on one bridge (issue 10):
//! three edge nodes, each with a Consul server, the router and vipd (100 ms
//! adverts, `--check-url` on the router's `/health`, `--track-url` on its
//! `/health/consul` with weight 20); a worker with a Consul client agent and
//! an HTTP backend registered as `app.example.com`; a client namespace that
//! polls the VIP. Every part can be killed and started again, alone or as a
//! whole node, so one cluster serves several failure events.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::HarnessError;
use crate::netns::{Netns, Topology};
use crate::process::{Daemon, bin_path};
use crate::vrrp::{self, HttpServer};

/// Edge nodes are `topo.nodes[0..EDGE]`; the worker is `topo.nodes[WORKER]`.
pub const EDGE: usize = 3;
pub const WORKER: usize = 3;
pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 50);
pub const VRID: u8 = 10;
/// Node 0 holds the VIP while all is well; 20 below the next one means a
/// node whose router cannot hear Consul (track weight 20) drops below it.
pub const PRIORITIES: [u8; EDGE] = [150, 140, 130];
pub const TRACK_WEIGHT: u8 = 20;
pub const PROXY_PORT: u16 = 9999;
const CONSUL_HTTP: u16 = 8500;
const CONSUL_SERVER_PORT: u16 = 8300;

fn io(what: &str) -> impl FnOnce(std::io::Error) -> HarnessError + '_ {
    move |source| HarnessError::Io { what: what.to_string(), source }
}

/// Time allowed for a request to a daemon inside a namespace.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(2);

/// One HTTP request from inside `ns`, `timeout` allowed.
pub fn http_in(
    ns: &Netns,
    ip: Ipv4Addr,
    port: u16,
    method: &'static str,
    path: &str,
    body: &str,
    timeout: Duration,
) -> Option<(u16, String)> {
    let (path, body) = (path.to_string(), body.to_string());
    ns.enter(move || vrrp::http(ip, port, method, &path, "localhost", &body, timeout).ok()).ok().flatten()
}

/// The processes of one edge node (each `None` while stopped).
#[derive(Default)]
struct Node {
    consul: Option<Daemon>,
    router: Option<Daemon>,
    vipd: Option<Daemon>,
}

pub struct EdgeCluster {
    // Field order is drop order: processes before the namespaces.
    nodes: Vec<Node>,
    worker_agent: Option<Daemon>,
    backend: Option<HttpServer>,
    /// Consul data directories, one per agent, kept across restarts.
    data: tempfile::TempDir,
    pub topo: Topology,
}

impl EdgeCluster {
    /// Builds the namespaces, starts every part and waits until the client
    /// gets `app.example.com` through the VIP from node 0.
    pub fn start() -> Result<EdgeCluster, HarnessError> {
        let topo = Topology::new(EDGE + 1)?;
        let data = tempfile::Builder::new().prefix("edge-cluster-").tempdir().map_err(io("tempdir"))?;
        let mut c = EdgeCluster {
            nodes: (0..EDGE).map(|_| Node::default()).collect(),
            worker_agent: None,
            backend: None,
            data,
            topo,
        };
        for i in 0..EDGE {
            c.start_consul(i)?;
        }
        c.worker_agent = Some(c.spawn_agent(WORKER, false)?);
        c.wait_for_leader(Duration::from_secs(60))?;
        c.backend = Some(HttpServer::spawn(&c.topo, WORKER)?);
        c.register("app", "app", &["urlprefix-app.example.com/"])?;
        for i in 0..EDGE {
            c.start_router(i)?;
        }
        for i in 0..EDGE {
            c.start_vipd(i)?;
        }
        let ready = crate::wait::poll(Duration::from_secs(60), || c.client_get("app.example.com", "/name"));
        if ready.is_none() {
            return Err(HarnessError::NotReady("the client never got app.example.com through the VIP".into()));
        }
        Ok(c)
    }

    fn data_dir(&self, i: usize) -> PathBuf {
        self.data.path().join(format!("consul-n{i}"))
    }

    fn spawn_agent(&self, i: usize, server: bool) -> Result<Daemon, HarnessError> {
        let dir = self.data_dir(i);
        std::fs::create_dir_all(&dir).map_err(io("consul data dir"))?;
        let mut cmd = self.topo.nodes[i].command("consul");
        // The HTTP API on the node's address too: the other nodes' routers
        // read from it while their own agent is dead (--consul-fallback-addr).
        cmd.args(["agent", "-log-level=info", "-disable-host-node-id"])
            .arg(format!("-client=127.0.0.1 {}", Topology::node_ip(i)))
            .arg(format!("-node={}", node_name(i)))
            .arg(format!("-bind={}", Topology::node_ip(i)))
            .arg(format!("-data-dir={}", dir.display()))
            // One election timing for the cluster: deploy/consul/server.hcl.
            .arg("-hcl=performance { raft_multiplier = 1 }")
            .arg("-hcl=ports { dns = -1, grpc = -1, serf_wan = -1 }")
            .arg("-hcl=disable_update_check = true");
        for j in 0..EDGE {
            cmd.arg(format!("-retry-join={}", Topology::node_ip(j)));
        }
        if server {
            cmd.args(["-server", &format!("-bootstrap-expect={EDGE}")]);
        }
        Daemon::spawn_command(&format!("consul-{}", node_name(i)), cmd)
    }

    pub fn start_consul(&mut self, i: usize) -> Result<(), HarnessError> {
        self.nodes[i].consul = Some(self.spawn_agent(i, true)?);
        Ok(())
    }

    pub fn kill_consul(&mut self, i: usize) {
        if let Some(mut d) = self.nodes[i].consul.take() {
            d.kill();
        }
    }

    pub fn start_router(&mut self, i: usize) -> Result<(), HarnessError> {
        let mut cmd = self.topo.nodes[i].command(bin_path("router")?);
        cmd.args(["--consul-addr", &format!("http://127.0.0.1:{CONSUL_HTTP}")])
            .args(["--proxy-addr", &format!("0.0.0.0:{PROXY_PORT}")])
            .args(["--admin-addr", "127.0.0.1:9998", "--vipd-addr", "127.0.0.1:9997"])
            .args((1..EDGE).flat_map(|k| {
                [
                    "--consul-fallback-addr".to_string(),
                    format!("http://{}:{CONSUL_HTTP}", Topology::node_ip((i + k) % EDGE)),
                ]
            }))
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info,router=debug".into()));
        self.nodes[i].router = Some(Daemon::spawn_command(&format!("router-n{i}"), cmd)?);
        Ok(())
    }

    pub fn kill_router(&mut self, i: usize) {
        if let Some(mut d) = self.nodes[i].router.take() {
            d.kill();
        }
    }

    pub fn start_vipd(&mut self, i: usize) -> Result<(), HarnessError> {
        let weight = TRACK_WEIGHT.to_string();
        let flags = [
            "--check-url",
            "http://127.0.0.1:9998/health",
            "--check-interval",
            "50ms",
            "--track-url",
            "http://127.0.0.1:9998/health/consul",
            "--track-weight",
            &weight,
        ];
        self.nodes[i].vipd = Some(vrrp::spawn_vipd(&self.topo, i, VIP, VRID, PRIORITIES[i], "100ms", &flags)?);
        Ok(())
    }

    /// The node dies: every process killed at once and its link down, so it
    /// neither serves nor answers ARP (a crashed or unplugged machine).
    pub fn kill_node(&mut self, i: usize) -> Result<(), HarnessError> {
        let n = &mut self.nodes[i];
        for d in [&mut n.vipd, &mut n.router, &mut n.consul].into_iter().flatten() {
            d.signal(libc::SIGKILL);
        }
        self.topo.nodes[i].ip(&["link", "set", Topology::IFACE, "down"])?;
        for d in [n.vipd.take(), n.router.take(), n.consul.take()].into_iter().flatten() {
            drop(d);
        }
        Ok(())
    }

    /// The node comes back as after a reboot (the VIP its crash left is
    /// gone): link up, Consul (same data), router, vipd.
    pub fn start_node(&mut self, i: usize) -> Result<(), HarnessError> {
        let _ = self.topo.nodes[i].ip(&["addr", "del", &format!("{VIP}/32"), "dev", Topology::IFACE]);
        self.topo.nodes[i].ip(&["link", "set", Topology::IFACE, "up"])?;
        self.start_consul(i)?;
        self.start_router(i)?;
        self.start_vipd(i)
    }

    /// Each live server's answer to `/v1/status/leader`: the leader's
    /// `address:port`, `""` during an election, `None` without an answer.
    pub fn leaders_seen(&self) -> Vec<Option<String>> {
        (0..EDGE)
            .filter(|i| self.nodes[*i].consul.is_some())
            .map(|i| {
                let ns = &self.topo.nodes[i];
                let (status, body) =
                    http_in(ns, Ipv4Addr::LOCALHOST, CONSUL_HTTP, "GET", "/v1/status/leader", "", ADMIN_TIMEOUT)?;
                serde_json::from_str::<String>(&body).ok().filter(|_| status == 200)
            })
            .collect()
    }

    /// Whether node `i`'s own Consul server names a leader (it has joined
    /// the raft and heard from the leader since it started).
    pub fn knows_leader(&self, i: usize) -> bool {
        let ns = &self.topo.nodes[i];
        http_in(ns, Ipv4Addr::LOCALHOST, CONSUL_HTTP, "GET", "/v1/status/leader", "", ADMIN_TIMEOUT)
            .is_some_and(|(s, b)| s == 200 && serde_json::from_str::<String>(&b).is_ok_and(|l| !l.is_empty()))
    }

    /// Node `i`'s raft statistics (`Stats.raft` of `/v1/agent/self`).
    fn raft_stats(&self, i: usize) -> Option<serde_json::Value> {
        let ns = &self.topo.nodes[i];
        let (status, body) = http_in(ns, Ipv4Addr::LOCALHOST, CONSUL_HTTP, "GET", "/v1/agent/self", "", ADMIN_TIMEOUT)?;
        let v = serde_json::from_str::<serde_json::Value>(&body).ok().filter(|_| status == 200)?;
        Some(v["Stats"]["raft"].clone())
    }

    /// Whether node `i`'s own Consul server has caught up with the leader:
    /// it leads, or it has heard from the leader (raft `last_contact` is not
    /// "never") and has applied everything the leader had committed when
    /// asked. Naming the leader is not enough: a restarted follower learns
    /// the leader from the first append it rejects while its log is behind.
    /// Killed then, the leader left that server serving an older state (or
    /// forwarding reads to the dead leader) until the new leader caught it
    /// up, and its router's reads with it: a route 6.2 s late or never
    /// within 30 s, once a 7.2 s outage.
    pub fn caught_up(&self, i: usize) -> bool {
        let Some(own) = self.raft_stats(i) else { return false };
        if own["state"] == "Leader" {
            return true;
        }
        if !own["last_contact"].as_str().is_some_and(|c| !c.is_empty() && c != "never") {
            return false;
        }
        let number = |v: &serde_json::Value, key: &str| v[key].as_str().and_then(|n| n.parse::<u64>().ok());
        let Some(leader) = self.leader().filter(|l| *l != i) else { return false };
        let Some(committed) = self.raft_stats(leader).and_then(|l| number(&l, "commit_index")) else { return false };
        number(&own, "applied_index").is_some_and(|applied| applied >= committed)
    }

    /// The raft leader as node index, asked of every live server.
    pub fn leader(&self) -> Option<usize> {
        self.leaders_seen()
            .into_iter()
            .flatten()
            .find_map(|addr| (0..EDGE).find(|j| addr == format!("{}:{CONSUL_SERVER_PORT}", Topology::node_ip(*j))))
    }

    /// Waits until a live server reports a leader; returns it and when.
    pub fn wait_for_leader(&self, timeout: Duration) -> Result<(usize, Instant), HarnessError> {
        crate::wait::poll(timeout, || self.leader().map(|l| (l, Instant::now())))
            .ok_or_else(|| HarnessError::NotReady(format!("no Consul leader after {timeout:?}")))
    }

    /// Registers a service on the worker's client agent (the backend's
    /// address and port, tags as given). The agent accepts it at once, even
    /// without a leader; it reaches the catalog when a leader commits it.
    pub fn register(&self, id: &str, name: &str, tags: &[&str]) -> Result<(), HarnessError> {
        let body = serde_json::json!({
            "ID": id, "Name": name, "Tags": tags,
            "Address": Topology::node_ip(WORKER).to_string(), "Port": vrrp::HTTP_PORT,
        })
        .to_string();
        let worker = &self.topo.nodes[WORKER];
        match http_in(
            worker,
            Ipv4Addr::LOCALHOST,
            CONSUL_HTTP,
            "PUT",
            "/v1/agent/service/register",
            &body,
            ADMIN_TIMEOUT,
        ) {
            Some((200, _)) => Ok(()),
            other => Err(HarnessError::NotReady(format!("register {id}: {other:?}"))),
        }
    }

    /// Registers a service straight into the catalog through edge node
    /// `via`'s server, under its own node `ext-<id>` at the worker's address
    /// (an external service; an agent's anti-entropy would remove it from
    /// the worker's node). The write is held by the server until there is a
    /// leader (Consul's `rpc_hold_timeout`, 7 s), so this returns once it is
    /// committed.
    pub fn register_in_catalog(&self, via: usize, id: &str, tags: &[&str]) -> Result<(), HarnessError> {
        let body = serde_json::json!({
            "Node": format!("ext-{id}"),
            "Address": Topology::node_ip(WORKER).to_string(),
            "Service": {
                "ID": id, "Service": id, "Tags": tags,
                "Address": Topology::node_ip(WORKER).to_string(), "Port": vrrp::HTTP_PORT,
            },
        })
        .to_string();
        let ns = &self.topo.nodes[via];
        // Longer than the server holds a write without a leader (7 s).
        let held = Duration::from_secs(10);
        // A write forwarded at the wrong moment of an election fails ("rpc
        // error making call: stream closed"): retried at once, as any
        // client of Consul (the registrar too) does.
        let deadline = Instant::now() + held;
        loop {
            match http_in(ns, Ipv4Addr::LOCALHOST, CONSUL_HTTP, "PUT", "/v1/catalog/register", &body, held) {
                Some((200, _)) => return Ok(()),
                Some((500, why)) if Instant::now() < deadline => {
                    tracing::info!(%why, "catalog write failed during the election; retrying");
                    std::thread::sleep(Duration::from_millis(20));
                }
                other => return Err(HarnessError::NotReady(format!("catalog register {id} via n{via}: {other:?}"))),
            }
        }
    }

    /// Whether every live server of the edge answers and none names node
    /// `old` as the leader any more (their heartbeat timed out: an election
    /// is under way or over).
    pub fn forgot_leader(&self, old: usize) -> bool {
        let old = format!("{}:{CONSUL_SERVER_PORT}", Topology::node_ip(old));
        self.leaders_seen().iter().all(|l| l.as_ref().is_some_and(|l| *l != old))
    }

    /// One request from the client namespace through the VIP; the body on 200.
    pub fn client_get(&self, host: &str, path: &str) -> Option<String> {
        let (host, path) = (host.to_string(), path.to_string());
        self.topo
            .client
            .enter(move || vrrp::http(VIP, PROXY_PORT, "GET", &path, &host, "", Duration::from_millis(500)).ok())
            .ok()
            .flatten()
            .filter(|(s, _)| *s == 200)
            .map(|(_, b)| b)
    }

    /// Edge nodes whose vipd runs (a dead node keeps the VIP configured on
    /// its downed link, as a crashed machine would).
    fn live(&self) -> Vec<usize> {
        (0..EDGE).filter(|i| self.nodes[*i].vipd.is_some()).collect()
    }

    /// Which live edge nodes hold the VIP.
    pub fn holders(&self) -> Vec<usize> {
        let live = self.live();
        self.topo.holders(VIP).into_iter().filter(|i| live.contains(i)).collect()
    }

    /// Waits until exactly node `i` holds the VIP among the live nodes.
    pub fn wait_holder(&self, i: usize, timeout: Duration) -> Result<(), Vec<usize>> {
        vrrp::wait_sole_holder(&self.topo, VIP, &self.live(), i, timeout).map(drop)
    }

    /// An admin page of node `i`'s router, from inside the node.
    pub fn router_admin(&self, i: usize, path: &str) -> Option<(u16, String)> {
        http_in(&self.topo.nodes[i], Ipv4Addr::LOCALHOST, 9998, "GET", path, "", ADMIN_TIMEOUT)
    }

    /// vipd's `/status` on node `i`.
    pub fn vipd_status(&self, i: usize) -> Option<serde_json::Value> {
        let (_, body) = http_in(&self.topo.nodes[i], Ipv4Addr::LOCALHOST, 9997, "GET", "/status", "", ADMIN_TIMEOUT)?;
        serde_json::from_str(&body).ok()
    }

    /// The logs of node `i`'s processes (for a failure report).
    pub fn logs(&self, i: usize) -> String {
        let n = &self.nodes[i];
        [("consul", &n.consul), ("router", &n.router), ("vipd", &n.vipd)]
            .iter()
            .filter_map(|(name, d)| d.as_ref().map(|d| format!("---- {name} n{i} ----\n{}", tail(&d.logs(), 3000))))
            .collect()
    }
}

impl EdgeCluster {
    /// Every live router's log lines that contain one of `needles` (the
    /// last 60 of each), for a failure report.
    pub fn router_lines(&self, needles: &[&str]) -> String {
        (0..EDGE)
            .filter_map(|i| {
                let logs = self.nodes[i].router.as_ref()?.logs();
                let lines: Vec<&str> = logs.lines().filter(|l| needles.iter().any(|n| l.contains(n))).collect();
                Some(format!("---- n{i} router ----\n{}\n", lines[lines.len().saturating_sub(60)..].join("\n")))
            })
            .collect()
    }

    /// What a failed assertion about requests needs: every live node's
    /// vipd transitions and check verdicts and its router's warnings, last
    /// lines first kept.
    pub fn events(&self) -> String {
        let pick = |d: &Option<Daemon>, keep: &dyn Fn(&str) -> bool| {
            let logs = d.as_ref().map(Daemon::logs).unwrap_or_default();
            let lines: Vec<&str> = logs.lines().filter(|l| keep(l)).collect();
            lines[lines.len().saturating_sub(15)..].join("\n")
        };
        (0..EDGE)
            .map(|i| {
                let n = &self.nodes[i];
                let vipd = pick(&n.vipd, &|l| l.contains("state changed") || l.contains("verdict changed"));
                let router = pick(&n.router, &|l| l.contains("WARN") || l.contains("Consul answers"));
                format!("---- n{i} vipd ----\n{vipd}\n---- n{i} router ----\n{router}\n")
            })
            .collect()
    }
}

fn tail(s: &str, max: usize) -> &str {
    let start = s.len().saturating_sub(max);
    let start = (start..s.len()).find(|i| s.is_char_boundary(*i)).unwrap_or(s.len());
    &s[start..]
}

fn node_name(i: usize) -> String {
    if i == WORKER { "worker".into() } else { format!("edge-n{i}") }
}

/// One request of the poller.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub started: Instant,
    /// The answer's body on a 200.
    pub body: Option<String>,
    /// Why it failed otherwise (`503`, `connect: timed out`...).
    pub error: Option<String>,
}

/// A client that sends `GET path` with `Host: host` to the VIP every 10 ms
/// from the client namespace, each request on its own thread (so a request
/// hanging on a dead node's MAC does not delay the next), with a 1 s limit.
pub struct Poller {
    stop: Arc<AtomicBool>,
    attempts: Arc<Mutex<Vec<Attempt>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Per-request time limit: an answer slower than this counts as failed.
pub const POLL_TIMEOUT: Duration = Duration::from_secs(1);
pub const POLL_EVERY: Duration = Duration::from_millis(10);

impl Poller {
    pub fn start(client: &Netns, host: &str, path: &str) -> Result<Poller, HarnessError> {
        let stop = Arc::new(AtomicBool::new(false));
        let attempts = Arc::new(Mutex::new(Vec::new()));
        let (flag, log, host, path) = (stop.clone(), attempts.clone(), host.to_string(), path.to_string());
        let thread = client.spawn_inside(move || {
            let mut inflight = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                let (log, host, path) = (log.clone(), host.clone(), path.clone());
                // Threads spawned here inherit the namespace.
                inflight.push(std::thread::spawn(move || {
                    let started = Instant::now();
                    let (body, error) = match vrrp::http(VIP, PROXY_PORT, "GET", &path, &host, "", POLL_TIMEOUT) {
                        Ok((200, b)) => (Some(b), None),
                        Ok((status, _)) => (None, Some(status.to_string())),
                        Err(e) => (None, Some(e)),
                    };
                    log.lock().unwrap_or_else(|p| p.into_inner()).push(Attempt { started, body, error });
                }));
                inflight.retain(|h: &std::thread::JoinHandle<()>| !h.is_finished());
                std::thread::sleep(POLL_EVERY);
            }
            for h in inflight {
                let _ = h.join();
            }
        })?;
        Ok(Poller { stop, attempts, thread: Some(thread) })
    }

    /// The attempts started in `[from, to)` that have finished, by start time.
    pub fn window(&self, from: Instant, to: Instant) -> Window {
        let mut v: Vec<Attempt> = self
            .attempts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|a| a.started >= from && a.started < to)
            .cloned()
            .collect();
        v.sort_by_key(|a| a.started);
        Window(v)
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The attempts of one event.
pub struct Window(pub Vec<Attempt>);

impl Window {
    pub fn failed(&self) -> usize {
        self.0.iter().filter(|a| a.body.is_none()).count()
    }

    pub fn total(&self) -> usize {
        self.0.len()
    }

    /// The longest time between the starts of two successful requests in a
    /// row: how long the client could not be served.
    pub fn gap(&self) -> Duration {
        let ok: Vec<Instant> = self.0.iter().filter(|a| a.body.is_some()).map(|a| a.started).collect();
        ok.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(Duration::MAX)
    }

    /// The failed requests as runs of start offsets from `t0` in ms
    /// (`from-to x count`), for a report.
    pub fn failures(&self, t0: Instant) -> String {
        let mut runs: Vec<(i128, i128, usize, String)> = Vec::new();
        let mut last_ok = true;
        for a in &self.0 {
            let at = if a.started >= t0 {
                (a.started - t0).as_millis() as i128
            } else {
                -((t0 - a.started).as_millis() as i128)
            };
            let why = a.error.clone().unwrap_or_default();
            match (&a.body, last_ok, runs.last_mut()) {
                (None, false, Some(run)) => {
                    run.1 = at;
                    run.2 += 1;
                    if !run.3.contains(&why) {
                        run.3 = format!("{}, {why}", run.3);
                    }
                }
                (None, _, _) => runs.push((at, at, 1, why)),
                _ => {}
            }
            last_ok = a.body.is_some();
        }
        runs.iter().map(|(a, b, n, why)| format!("{a}..{b} ms x{n} ({why})")).collect::<Vec<_>>().join("; ")
    }

    /// Which bodies answered, in order of first appearance.
    pub fn answered_by(&self) -> Vec<String> {
        let mut seen: Vec<String> = Vec::new();
        for b in self.0.iter().filter_map(|a| a.body.clone()) {
            if !seen.contains(&b) {
                seen.push(b);
            }
        }
        seen
    }
}
