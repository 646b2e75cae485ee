//! A real Consul agent in dev mode (a single server, state in memory) on
//! free loopback ports, for one test.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

use crate::HarnessError;
use crate::ports::free_port;
use crate::process::{kill_and_reap, log_tail, signal_group, spawn_owned, wait_exit};
use crate::wait::wait_until;

/// The ports one agent listens on. DNS, WAN gossip and gRPC are switched
/// off: tests never use them, and fixed defaults would collide between
/// tests running in parallel.
#[derive(Debug, Clone, Copy)]
struct Ports {
    http: u16,
    serf_lan: u16,
    server: u16,
}

impl Ports {
    fn pick() -> Self {
        Ports { http: free_port(), serf_lan: free_port(), server: free_port() }
    }
}

/// A running `consul agent -dev`, stopped when dropped.
pub struct ConsulAgent {
    child: Option<Child>,
    ports: Ports,
    node: String,
    dir: tempfile::TempDir,
    starts: u32,
}

impl ConsulAgent {
    /// Starts an agent on free ports and waits until it has elected itself
    /// leader and registered its node, so the catalog answers at once.
    pub async fn start() -> Result<Self, HarnessError> {
        let node = format!("node-{}", std::process::id());
        let mut last = None;
        // A port picked as free may be taken before Consul binds it: retry
        // with new ports (the failed agent is stopped as it drops).
        for _ in 0..3 {
            let dir = tempfile::Builder::new()
                .prefix("edge-consul-")
                .tempdir()
                .map_err(|source| HarnessError::Io { what: "tempdir".into(), source })?;
            let mut agent = ConsulAgent { child: None, ports: Ports::pick(), node: node.clone(), dir, starts: 0 };
            match agent.launch().await {
                Ok(()) => return Ok(agent),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| HarnessError::NotReady("consul did not start".into())))
    }

    async fn launch(&mut self) -> Result<(), HarnessError> {
        self.starts += 1;
        let p = self.ports;
        let config = self.dir.path().join("ports.hcl");
        std::fs::write(
            &config,
            format!(
                "ports {{ http = {}, dns = -1, serf_lan = {}, serf_wan = -1, server = {}, grpc = -1 }}\n",
                p.http, p.serf_lan, p.server
            ),
        )
        .map_err(|source| HarnessError::Io { what: "write consul config".into(), source })?;
        let mut cmd = Command::new("consul");
        cmd.args(["agent", "-dev", "-log-level=info", "-bind=127.0.0.1", "-client=127.0.0.1"])
            .arg(format!("-node={}", self.node))
            .arg(format!("-config-file={}", config.display()));
        self.child = Some(spawn_owned(&mut cmd, &self.log_path())?);
        let client = self.client();
        let ready = wait_until(Duration::from_secs(30), || {
            let client = client.clone();
            let node = self.node.clone();
            async move {
                let leader = client.leader().await.ok()?;
                if leader.is_empty() {
                    return None;
                }
                let svc = client.health_service("consul", false, &Default::default()).await.ok()?;
                svc.value.iter().any(|e| e.node.name == node).then_some(())
            }
        })
        .await;
        match (ready, self.child.as_mut().map(|c| c.try_wait())) {
            (Some(()), _) => Ok(()),
            (None, Some(Ok(Some(st)))) => {
                Err(HarnessError::NotReady(format!("consul exited with {st}:\n{}", log_tail(&self.log_path(), 4000))))
            }
            _ => Err(HarnessError::NotReady(format!(
                "consul had no leader after 30 s:\n{}",
                log_tail(&self.log_path(), 4000)
            ))),
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join(format!("consul-{}.log", self.starts))
    }

    /// `http://127.0.0.1:PORT`, the value for `--consul-addr`.
    pub fn http_addr(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.http)
    }

    /// The agent's node name (what services registered on it belong to).
    pub fn node_name(&self) -> &str {
        &self.node
    }

    /// A client for this agent.
    pub fn client(&self) -> consul::Client {
        consul::Client::new(&self.http_addr()).expect("a loopback URL is a valid Consul address")
    }

    /// Stops the agent with SIGKILL: dev mode keeps state in memory, so
    /// every registration is lost, as after a crash of a real agent that
    /// lost its data dir.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill_and_reap(&mut c);
        }
    }

    /// Stops the agent with SIGTERM (a graceful leave) and waits for it.
    pub fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal_group(&c, libc::SIGTERM);
            if wait_exit(&mut c, Duration::from_secs(10)).is_none() {
                kill_and_reap(&mut c);
            }
        }
    }

    /// Starts the agent again on the same ports (after [`stop`](Self::stop)),
    /// empty, and waits until it is ready.
    pub async fn restart(&mut self) -> Result<(), HarnessError> {
        self.stop();
        self.launch().await
    }

    /// Everything the agent logged since its last start.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

impl Drop for ConsulAgent {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("---- consul log (tail) ----\n{}", log_tail(&self.log_path(), 4000));
        }
    }
}
