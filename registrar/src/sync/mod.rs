//! The sync loop: the one owner of desired state and the only code that
//! talks to Consul. Sources feed it [`SourceEvent`]s; the pure
//! [`state::Desired`] turns them into registrations (conventions) and the
//! Consul calls they need; this shell makes the calls and keeps the local
//! agent matching (reconcile).
//!
//! - Events are applied at once (register, deregister, TTL update), so a
//!   container start reaches Consul within one inspect and one PUT.
//! - A full reconcile (`agent/services` vs desired, see `reconcile`) runs
//!   on every source snapshot (start, Docker reconnect, Kubernetes relist),
//!   every `--resync`, and whenever the agent lost our entries.
//! - Agent restarts: a dev agent or one that lost its data dir comes back
//!   empty. Every second we list the agent's service IDs; one of ours
//!   missing means the agent forgot us, and we reconcile at once.
//! - Consul down: any failed call marks a reconcile as owed and retries it
//!   with backoff. Events keep updating desired state meanwhile, so when
//!   Consul returns the first reconcile makes it exactly right.
//! - Health: registrar-owned TTL checks are refreshed every third of their
//!   TTL and updated at once when a workload's health signal flips.

mod state;

use std::time::Duration;

use consul::{ServiceRegistration, TtlStatus};
use kit::{Backoff, StopWatch};
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior, interval_at, sleep_until};
use tracing::{debug, info, warn};

use crate::conventions::{HEALTH_TTL_SECS, Options, health_check_id};
use crate::reconcile::{self, Step};
use crate::source::SourceEvent;

pub use state::{Clash, Desired, Effect, Wanted};

/// How often the agent is checked for entries it lost.
const PRESENCE_INTERVAL: Duration = Duration::from_secs(1);

/// Settings of the loop.
#[derive(Debug, Clone)]
pub struct Config {
    pub node: String,
    pub options: Options,
    /// `--resync`: period of the full reconcile.
    pub resync: Duration,
}

/// Why the loop ended before the process stopped.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("every workload source hung up")]
    SourcesGone,
}

/// The I/O shell around [`Desired`]: receives events, makes the Consul
/// calls, retries with backoff.
pub struct SyncLoop {
    consul: consul::Client,
    node: String,
    resync: Duration,
    desired: Desired,
    /// A Consul call failed: a full reconcile is owed, at this instant
    /// (backoff); per-event calls pause until it succeeds.
    owed: Option<Instant>,
    backoff: Backoff,
}

impl SyncLoop {
    pub fn new(consul: consul::Client, config: Config) -> Self {
        SyncLoop {
            consul,
            node: config.node,
            resync: config.resync,
            desired: Desired::new(config.options),
            owed: None,
            backoff: Backoff::new(Duration::from_millis(200), Duration::from_secs(5)),
        }
    }

    /// Runs until `stop`; ends early only when every source has hung up.
    pub async fn run(mut self, mut events: mpsc::Receiver<SourceEvent>, mut stop: StopWatch) -> Result<(), SyncError> {
        let now = Instant::now();
        let mut resync = interval_at(now + self.resync, self.resync);
        let mut presence = interval_at(now + PRESENCE_INTERVAL, PRESENCE_INTERVAL);
        let ttl_period = Duration::from_secs(HEALTH_TTL_SECS / 3);
        let mut ttl = interval_at(now + ttl_period, ttl_period);
        for t in [&mut resync, &mut presence, &mut ttl] {
            t.set_missed_tick_behavior(MissedTickBehavior::Delay);
        }
        loop {
            let retry_at = self.owed.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                biased;
                () = stop.stopped() => return Ok(()),
                event = events.recv() => match event {
                    Some(event) => self.handle(event).await,
                    None => return Err(SyncError::SourcesGone),
                },
                _ = sleep_until(retry_at), if self.owed.is_some() => self.reconcile("retry").await,
                _ = resync.tick() => self.reconcile("resync").await,
                _ = presence.tick(), if self.owed.is_none() => self.check_presence().await,
                _ = ttl.tick(), if self.owed.is_none() => self.refresh_ttls().await,
            }
        }
    }

    async fn handle(&mut self, event: SourceEvent) {
        match self.desired.apply(event) {
            Effect::Reconcile => self.reconcile("snapshot").await,
            // While a reconcile is owed it will make everything right.
            Effect::Steps(steps) if self.owed.is_none() => self.apply_steps(steps).await,
            Effect::Steps(_) => {}
        }
    }

    /// Registers what is new or changed, updates health TTLs in place,
    /// removes the rest; stops at the first failure.
    async fn apply_steps(&mut self, steps: Vec<Step>) {
        for step in steps {
            match step {
                Step::Register(reg) => match self.consul.register_service(&reg).await {
                    Ok(()) => registered(&reg),
                    Err(error) => return self.failed("register", &reg.id, &error),
                },
                Step::Health { service_id, passing } => {
                    let status = if passing { TtlStatus::Pass } else { TtlStatus::Fail };
                    if let Err(error) = self.consul.ttl_check(&health_check_id(&service_id), status, "").await {
                        return self.failed("update health check", &service_id, &error);
                    }
                    info!(service_id = %service_id, healthy = passing, "health check updated");
                }
                Step::Deregister(id) => match self.consul.deregister_service(&id).await {
                    Ok(()) => info!(service_id = %id, "deregistered"),
                    Err(error) => return self.failed("deregister", &id, &error),
                },
            }
        }
    }

    /// Makes the agent hold exactly the desired entries among ours.
    async fn reconcile(&mut self, why: &'static str) {
        let actual = match self.consul.agent_services().await {
            Ok(a) => a,
            Err(error) => return self.failed("list agent services", why, &error),
        };
        let wanted = self.desired.registrations();
        for clash in &wanted.clashes {
            warn!(service_id = %clash.service_id, workload = %clash.workload, "service ID already used by another workload; skipped");
        }
        let diff = reconcile::diff(&wanted.by_id, &actual, &self.node, self.desired.listed());
        if !diff.is_empty() {
            info!(
                reason = why,
                register = diff.register.len(),
                deregister = diff.deregister.len(),
                "reconciling with Consul"
            );
        }
        for reg in &diff.register {
            if let Err(error) = self.consul.register_service(reg).await {
                return self.failed("register", &reg.id, &error);
            }
            registered(reg);
        }
        for id in &diff.deregister {
            if let Err(error) = self.consul.deregister_service(id).await {
                return self.failed("deregister", id, &error);
            }
            info!(service_id = %id, "deregistered stale entry");
        }
        if self.owed.take().is_some() {
            info!(reason = why, "Consul in sync again");
        }
        self.backoff.reset();
        debug!(reason = why, services = actual.len(), "reconciled");
        self.refresh_ttls().await;
    }

    /// Reconciles when the agent lost any entry we registered.
    async fn check_presence(&mut self) {
        let actual = match self.consul.agent_services().await {
            Ok(a) => a,
            Err(error) => return self.failed("list agent services", "presence", &error),
        };
        let missing = self.desired.registrations().by_id.keys().filter(|id| !actual.contains_key(*id)).count();
        if missing > 0 {
            warn!(missing, "Consul agent lost our entries (agent restarted?); reconciling");
            self.reconcile("agent lost entries").await;
        }
    }

    /// Re-asserts every registrar-owned TTL check before it expires.
    async fn refresh_ttls(&mut self) {
        for (check_id, passing) in self.desired.ttl_checks() {
            let status = if passing { TtlStatus::Pass } else { TtlStatus::Fail };
            if let Err(error) = self.consul.ttl_check(&check_id, status, "").await {
                return self.failed("refresh health check", &check_id, &error);
            }
        }
    }

    /// Records a failed Consul call: a full reconcile is owed after backoff.
    fn failed(&mut self, what: &str, subject: &str, error: &consul::Error) {
        let delay = self.backoff.next_delay();
        warn!(operation = what, subject, %error, retry_in = ?delay, "Consul call failed; will reconcile");
        self.owed = Some(Instant::now() + delay);
    }
}

fn registered(reg: &ServiceRegistration) {
    info!(service_id = %reg.id, service = %reg.name, address = %reg.address, port = ?reg.port, "registered");
}
