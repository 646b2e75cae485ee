//! JSON shapes of the admin API. `/api/routes` is the contract in docs/router.md: an
//! array with one entry per route and target (fabio's shape), so a script can
//! grep one line per backend. `/api/status` is one documented object with
//! everything else the UI shows.

use std::time::Duration;

use serde::Serialize;

use crate::discovery::{Shared, Snapshot};
use crate::routes::outlier::HealthView;
use crate::routes::{Problem, RouteOptions, Target};

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
    let http =
        s.table.routes().iter().flat_map(|r| {
            r.targets.iter().zip(r.health.iter()).map(move |(t, h)| entry(&r.host, &r.path, t, h.view(now)))
        });
    // TCP routes: host `:PORT`, path empty, as their source is written; no
    // passive health (a refused connect already moves to the next target).
    // TLS passthrough routes likewise, with their host (SNI has no path),
    // most specific host first.
    let tcp = s
        .table
        .tcp_routes()
        .iter()
        .chain(s.table.passthrough_routes())
        .flat_map(|r| r.targets.iter().map(move |t| entry(&r.source, "", t, HealthView::default())));
    http.chain(tcp).collect()
}

fn entry<'a>(host: &'a str, path: &'a str, t: &'a Target, health: HealthView) -> RouteEntry<'a> {
    RouteEntry {
        host,
        path,
        service: &t.service,
        target: t.url.to_string(),
        instance: &t.instance_id,
        weight: t.weight,
        options: &t.opts,
        tags: &t.tags,
        health,
    }
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
    /// Skipped tags, override lines and certificates, with why.
    pub problems: Vec<Problem>,
    /// The liveness probe finds the Consul agent answering.
    pub consul_reachable: bool,
    /// `X-Consul-LastContact` of the latest answer, in milliseconds.
    pub consul_last_contact_ms: u64,
    /// Milliseconds since a leader in contact was last seen (null: never).
    pub consul_leader_seen_ms_ago: Option<u64>,
    /// Why `/health/consul` fails, or null while it passes.
    pub consul_problem: Option<String>,
    /// The local vipd's `/status` (with `--vipd-addr`): `{"ok": {...}}`,
    /// `{"error": "why"}`, or null without the flag.
    pub vip: Option<VipStatus>,
}

/// One served certificate, for `/api/certs`.
#[derive(Debug, Serialize)]
pub struct Cert<'a> {
    #[serde(flatten)]
    pub info: &'a crate::tls::cert::Info,
    pub default: bool,
    /// For a certificate ACME keeps: where its ordering stands.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acme: Option<AcmeState>,
}

/// An ACME name's state: `valid`, `pending` or `failed` with the CA's error.
#[derive(Debug, Clone, Serialize)]
pub struct AcmeState {
    pub state: router::acme::plan::Shown,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// An ACME name no certificate is served for yet.
#[derive(Debug, Serialize)]
pub struct Unissued {
    pub name: String,
    pub acme: AcmeState,
}

/// `/api/certs`: the served certificates, then the ACME names without one.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum CertEntry<'a> {
    Served(Cert<'a>),
    Unissued(Unissued),
}

pub fn certs<'a>(store: &'a crate::tls::Store, acme: Option<&crate::autocert::Acme>) -> Vec<CertEntry<'a>> {
    let records = acme.map(|a| a.records.load_full()).unwrap_or_default();
    let ours = acme.map(|a| a.source().to_string());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let state = |name: &str| {
        let (state, error) = router::acme::plan::shown(records.get(name), now);
        AcmeState { state, error: error.map(str::to_string) }
    };
    let mut served = std::collections::HashSet::new();
    let mut out: Vec<CertEntry<'a>> = store
        .certs()
        .map(|(info, default)| {
            let acme = (Some(&info.source) == ours.as_ref()).then(|| {
                served.insert(info.name.clone());
                state(&info.name)
            });
            CertEntry::Served(Cert { info, default, acme })
        })
        .collect();
    for name in records.keys().filter(|n| !served.contains(*n)) {
        out.push(CertEntry::Unissued(Unissued { name: name.clone(), acme: state(name) }));
    }
    out
}

/// Skipped tags, override lines and certificates, and TCP routes' ports
/// that could not be listened on.
pub fn problems(shared: &Shared, tls: Option<&crate::tls::Tls>, tcp: &crate::tcp::Unbound) -> Vec<Problem> {
    let mut p = shared.snapshot.load().problems.clone();
    if let Some(t) = tls {
        p.extend(t.resolver.store.load().problems.iter().cloned());
    }
    p.extend(tcp.problems());
    p
}

/// The local vipd's status or why it could not be read.
#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VipStatus {
    Ok(serde_json::Value),
    Error(String),
}

pub fn status(
    shared: &Shared,
    overrides_key: &str,
    max_stale: Duration,
    vip: Option<Result<serde_json::Value, String>>,
    tls: Option<&crate::tls::Tls>,
    tcp: &crate::tcp::Unbound,
) -> Status {
    let s = shared.snapshot.load();
    let st = &shared.status;
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
        problems: problems(shared, tls, tcp),
        consul_reachable: st.reachable(),
        consul_last_contact_ms: st.last_contact_ms(),
        consul_leader_seen_ms_ago: st.leader_seen_ago().map(|d| d.as_millis() as u64),
        consul_problem: st.consul_problem(max_stale),
        vip: vip.map(|v| match v {
            Ok(v) => VipStatus::Ok(v),
            Err(e) => VipStatus::Error(e),
        }),
    }
}
