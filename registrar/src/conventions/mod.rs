//! registrator's conventions, as a pure function from a [`Workload`] to the
//! Consul registrations it should have. No I/O: the sync loop calls this
//! on every change and diffs the result against Consul.
//!
//! - Names: `SERVICE_<port>_NAME`, else `SERVICE_NAME`, else the image name;
//!   with several ports a name not given per port gets `-<port>`.
//! - Tags: `SERVICE_[<port>_]TAGS` then the registrar's `--tags`.
//! - IDs: `SERVICE_[<port>_]ID`, else `<node>:<instance>:<port>[:udp]`.
//! - `SERVICE_[<port>_]IGNORE` skips; `SERVICE_CHECK_*` builds a check;
//!   every other `SERVICE_<KEY>` becomes meta `<key>` (lowercase).
//! - Meta `registrar-node` / `registrar-source` mark the entry as ours, so
//!   a restarted registrar finds and removes its stale entries; a
//!   fingerprint of the whole registration (`registrar-hash`) lets reconcile
//!   notice a changed check, which `agent/services` does not show.
//!
//! Invalid values cost only their own key: they come back as [`Warning`]s
//! naming the workload and key, for the caller to log.

mod checks;
mod duration;
mod keys;
mod name;
mod tags;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

use consul::ServiceRegistration;

use crate::workload::{Addressing, Port, Protocol, Workload, WorkloadName};

pub use checks::{HEALTH_TTL_SECS, health_check_id};
use keys::{Keys, truthy};

/// Meta key naming the registrar node that owns an entry.
pub const META_NODE: &str = "registrar-node";
/// Meta key naming the source (`docker`, `kubernetes`) an entry came from.
pub const META_SOURCE: &str = "registrar-source";
/// Meta key holding the fingerprint of the registration.
pub const META_HASH: &str = "registrar-hash";

/// Settings that apply to every workload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// `--tags`: appended to every service's tags.
    pub extra_tags: Vec<String>,
}

/// A value that was skipped; the rest of the workload is registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The workload it belongs to (container name, `namespace:pod`); set by
    /// [`registrations`].
    pub workload: String,
    pub key: String,
    pub value: String,
    pub problem: String,
}

impl Warning {
    fn new(key: &str, value: &str, problem: &str) -> Self {
        Warning { workload: String::new(), key: key.into(), value: value.into(), problem: problem.into() }
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}={:?} skipped: {}", self.workload, self.key, self.value, self.problem)
    }
}

/// What the conventions make of one workload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// One registration per registrable port not ignored, by port order.
    pub services: Vec<ServiceRegistration>,
    pub warnings: Vec<Warning>,
}

/// The registrations `w` should have.
pub fn registrations(w: &Workload, opts: &Options) -> Plan {
    let mut warnings = Vec::new();
    let keys = Keys::parse(&w.env, &w.metadata, &mut warnings);
    let mut ports: Vec<(Port, SocketAddr)> =
        w.ports.iter().filter_map(|p| endpoint(w, p).map(|target| (*p, target))).collect();
    ports.sort();
    ports.dedup_by_key(|(p, _)| (p.container_port, p.protocol));
    let group = ports.len() > 1;
    let default_name = name::from_image(&w.image);
    let all_ignored = keys.generic("ignore").is_some_and(|v| truthy(&v.value));

    let mut services = Vec::new();
    for (port, target) in ports {
        let p = port.container_port;
        let ignore = match keys.port_only(p, "ignore") {
            Some(v) => truthy(&v.value),
            None => all_ignored,
        };
        if ignore {
            continue;
        }
        let suffix = match port.protocol {
            Protocol::Tcp => format!("{p}"),
            Protocol::Udp => format!("{p}:udp"),
        };
        let id = match (keys.port_only(p, "id"), keys.get(p, "id")) {
            (Some(v), _) => v.value.clone(),
            (None, Some(v)) if !group => v.value.clone(),
            (None, Some(v)) => format!("{}:{suffix}", v.value),
            (None, None) => format!("{}:{}:{suffix}", w.node, w.name),
        };
        let name = match keys.port_only(p, "name") {
            Some(v) => v.value.clone(),
            None => {
                let base = keys.get(p, "name").map_or(default_name.as_str(), |v| v.value.as_str());
                if group { format!("{base}-{p}") } else { base.to_string() }
            }
        };
        let tags =
            tags::merge(keys.get(p, "tags").map(|v| tags::split(&v.value)).unwrap_or_default(), &opts.extra_tags);
        let mut reg = ServiceRegistration {
            id: id.clone(),
            name,
            tags,
            address: target.ip().to_string(),
            port: Some(target.port()),
            meta: meta(&keys, p, w, &mut warnings),
            checks: Vec::new(),
        };
        if let Some(c) = checks::from_keys(&keys, p, &id, target, &mut warnings) {
            reg.checks.push(c);
        }
        if let Some(healthy) = w.health {
            reg.checks.push(checks::health(&id, w.source.as_str(), healthy));
        }
        reg.meta.insert(META_HASH.into(), fingerprint(&reg));
        services.push(reg);
    }
    // A key can be consulted for several ports: report each problem once.
    warnings.sort_by(|a, b| (&a.key, &a.problem).cmp(&(&b.key, &b.problem)));
    warnings.dedup();
    for warning in &mut warnings {
        warning.workload = w.name.to_string();
    }
    Plan { services, warnings }
}

/// Where `port` is reached, per the workload's addressing; `None` when it
/// is not reachable that way (not published, no address yet).
fn endpoint(w: &Workload, port: &Port) -> Option<SocketAddr> {
    match w.addressing {
        Addressing::Workload => Some(SocketAddr::new(w.preferred_address()?, port.container_port)),
        Addressing::Published { host } => {
            let published = port.published?;
            let ip = published.host_ip.filter(|ip| !ip.is_unspecified()).unwrap_or(host);
            Some(SocketAddr::new(ip, published.host_port))
        }
    }
}

/// Keys that are conventions, not meta.
fn is_convention(key: &str) -> bool {
    matches!(key, "name" | "tags" | "id" | "ignore") || key.starts_with("check_")
}

/// User meta from the remaining keys, then the registrar's own.
fn meta(keys: &Keys, port: u16, w: &Workload, warnings: &mut Vec<Warning>) -> BTreeMap<String, String> {
    let mut meta = BTreeMap::new();
    for (k, v) in keys.all_for(port) {
        if is_convention(k) {
            continue;
        }
        // Consul's rules for meta keys and values.
        let valid_key = k.len() <= 128 && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid_key || k.starts_with("consul-") || k.starts_with("registrar-") {
            warnings.push(Warning::new(&v.key, &v.value, "not usable as a Consul meta key"));
        } else if v.value.len() > 512 {
            warnings.push(Warning::new(&v.key, &v.value, "meta value longer than 512 bytes"));
        } else {
            meta.insert(k.to_string(), v.value.clone());
        }
    }
    meta.insert(META_NODE.into(), w.node.clone());
    meta.insert(META_SOURCE.into(), w.source.as_str().into());
    match &w.name {
        WorkloadName::Container { name } => {
            meta.insert("container-name".into(), name.clone());
        }
        WorkloadName::Pod { namespace, name, owner } => {
            meta.insert("pod-namespace".into(), namespace.clone());
            meta.insert("pod-name".into(), name.clone());
            if let Some(owner) = owner {
                meta.insert("pod-owner".into(), owner.clone());
            }
        }
    }
    meta
}

/// A stable fingerprint (FNV-1a 64 over the JSON form) of everything in a
/// registration except check statuses, which the sync loop updates in
/// place: a health flip must not look like a changed registration.
fn fingerprint(reg: &ServiceRegistration) -> String {
    let mut r = reg.clone();
    r.meta.remove(META_HASH);
    for c in &mut r.checks {
        c.status.clear();
    }
    let bytes = serde_json::to_vec(&r).unwrap_or_default();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests;
