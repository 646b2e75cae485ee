//! JSON shapes of the admin API. `/api/routes` is the contract in docs/router.md: an
//! array with one entry per route and target (fabio's shape), so a script can
//! grep one line per backend. `/api/status` is one documented object with
//! everything else the UI shows.

use serde::Serialize;

use crate::discovery::{Shared, Snapshot};
use crate::routes::outlier::HealthView;
use crate::routes::{Problem, RouteOptions};

/// One route-target pair.
#[derive(Debug, Serialize)]
pub struct RouteEntry<'a> {
    /// `""` for any host.
    pub host: &'a str,
    pub path: &'a str,
    pub service: &'a str,
    /// The target's URL, `scheme://address:port/`.
    pub target: String,
    pub instance: &'a str,
    /// Share of the route's traffic this target gets, 0 to 1.
    pub weight: f64,
    pub options: &'a RouteOptions,
    pub tags: &'a [String],
    /// Passive health: whether the proxy skips the target now, and why.
    pub health: HealthView,
}

pub fn routes(s: &Snapshot) -> Vec<RouteEntry<'_>> {
    let now = std::time::Instant::now();
    s.table
        .routes()
        .iter()
        .flat_map(|r| {
            r.targets.iter().zip(r.health.iter()).map(move |(t, h)| RouteEntry {
                host: &r.host,
                path: &r.path,
                service: &t.service,
                target: t.url.to_string(),
                instance: &t.instance_id,
                weight: t.weight,
                options: &t.opts,
                tags: &t.tags,
                health: h.view(now),
            })
        })
        .collect()
}

/// `/api/status`.
#[derive(Debug, Serialize)]
pub struct Status {
    /// A table from Consul has been published.
    pub loaded: bool,
    /// Every Consul watch's last read succeeded.
    pub watch_alive: bool,
    pub consul_errors: u64,
    pub last_error: Option<String>,
    pub routes: usize,
    pub instances: usize,
    /// Unix time of the last table update in milliseconds (0: none yet).
    pub updated_unix_ms: u64,
    pub overrides_key: String,
    pub overrides: String,
    /// Skipped tags and override lines, with why.
    pub problems: Vec<Problem>,
}

pub fn status(shared: &Shared, overrides_key: &str) -> Status {
    let s = shared.snapshot.load();
    Status {
        loaded: shared.status.loaded(),
        watch_alive: shared.status.failing() == 0,
        consul_errors: shared.status.errors(),
        last_error: shared.status.last_error().map(|e| e.to_string()),
        routes: s.table.len(),
        instances: s.instances,
        updated_unix_ms: s.built_unix_ms,
        overrides_key: overrides_key.to_string(),
        overrides: s.overrides.clone(),
        problems: s.problems.clone(),
    }
}
