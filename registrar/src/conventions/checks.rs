//! Consul checks from `SERVICE_CHECK_*` keys (registrator's), plus the TTL
//! check the registrar itself owns for workloads with a health signal
//! (Docker HEALTHCHECK, pod readiness), so a router stops sending traffic
//! the moment the workload reports itself unhealthy.
//!
//! Script checks (`SERVICE_CHECK_SCRIPT`) are refused: they would run a
//! command chosen by any container on the Consul agent's host.

use std::net::SocketAddr;

use consul::CheckRegistration;

use super::keys::{Keys, truthy};
use super::{Warning, duration};

/// Interval of HTTP/TCP checks when `SERVICE_CHECK_INTERVAL` is unset.
pub const DEFAULT_INTERVAL: &str = "10s";

/// TTL of the registrar-owned health check. The sync loop refreshes it
/// every third of this; if the registrar dies the check goes critical,
/// which is the safe side for a workload that declared a health signal.
pub const HEALTH_TTL_SECS: u64 = 30;

/// The check ID the registrar uses for a service's health TTL check.
pub fn health_check_id(service_id: &str) -> String {
    format!("service:{service_id}:health")
}

/// The check ID of a check from the `SERVICE_CHECK_*` conventions.
pub fn convention_check_id(service_id: &str) -> String {
    format!("service:{service_id}")
}

/// The check described by the keys for `port`, reaching the service at
/// `target`; `None` when no check key is set or the one set is invalid.
pub fn from_keys(
    keys: &Keys,
    port: u16,
    service_id: &str,
    target: SocketAddr,
    warnings: &mut Vec<Warning>,
) -> Option<CheckRegistration> {
    let get = |name: &str| keys.get(port, name);
    if let Some(v) = get("check_script").or_else(|| get("check_cmd")) {
        warnings.push(Warning::new(&v.key, &v.value, "script checks are not supported"));
    }
    let duration_key = |name: &str, warnings: &mut Vec<Warning>| -> Option<String> {
        let v = get(name)?;
        if duration::is_valid(v.value.trim()) {
            Some(v.value.trim().to_string())
        } else {
            warnings.push(Warning::new(&v.key, &v.value, "not a duration (e.g. 10s, 1m30s)"));
            None
        }
    };
    let mut check = CheckRegistration { check_id: convention_check_id(service_id), ..Default::default() };
    let path = |p: &str| if p.starts_with('/') { p.to_string() } else { format!("/{p}") };
    if let Some(v) = get("check_http") {
        check.http = format!("http://{target}{}", path(&v.value));
        check.name = format!("HTTP {}", path(&v.value));
    } else if let Some(v) = get("check_https") {
        check.http = format!("https://{target}{}", path(&v.value));
        check.name = format!("HTTPS {}", path(&v.value));
        check.tls_skip_verify = get("check_tls_skip_verify").is_some_and(|v| truthy(&v.value));
    } else if get("check_tcp").is_some_and(|v| truthy(&v.value)) {
        check.tcp = target.to_string();
        check.name = format!("TCP {target}");
    } else if get("check_ttl").is_some() {
        check.ttl = duration_key("check_ttl", warnings)?;
        check.name = format!("TTL {}", check.ttl);
    } else {
        return None;
    }
    if check.ttl.is_empty() {
        check.interval = duration_key("check_interval", warnings).unwrap_or_else(|| DEFAULT_INTERVAL.to_string());
        check.timeout = duration_key("check_timeout", warnings).unwrap_or_default();
    }
    check.deregister_critical_service_after = duration_key("check_deregister_after", warnings).unwrap_or_default();
    if let Some(v) = get("check_initial_status") {
        match v.value.trim().to_ascii_lowercase().as_str() {
            s @ ("passing" | "warning" | "critical") => check.status = s.to_string(),
            _ => warnings.push(Warning::new(&v.key, &v.value, "not passing, warning or critical")),
        }
    }
    Some(check)
}

/// The registrar-owned TTL check following a health signal; it starts in
/// the state the signal is in now, so a re-registration never flaps it.
pub fn health(service_id: &str, source: &str, healthy: bool) -> CheckRegistration {
    CheckRegistration {
        check_id: health_check_id(service_id),
        name: format!("{source} health"),
        ttl: format!("{HEALTH_TTL_SECS}s"),
        status: if healthy { "passing" } else { "critical" }.to_string(),
        notes: format!("owned by the registrar: follows the {source} health signal"),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn check(pairs: &[(&str, &str)], port: u16) -> (Option<CheckRegistration>, Vec<Warning>) {
        let env: BTreeMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut w = vec![];
        let keys = Keys::parse(&env, &BTreeMap::new(), &mut w);
        let target: SocketAddr = "10.0.0.5:8080".parse().unwrap();
        let c = from_keys(&keys, port, "n:web:80", target, &mut w);
        (c, w)
    }

    #[test]
    fn none_without_keys() {
        assert_eq!(check(&[("SERVICE_NAME", "x")], 80), (None, vec![]));
    }

    #[test]
    fn http_with_defaults() {
        let (c, w) = check(&[("SERVICE_CHECK_HTTP", "/health")], 80);
        let c = c.unwrap();
        assert_eq!(c.http, "http://10.0.0.5:8080/health");
        assert_eq!(c.interval, "10s");
        assert_eq!(c.check_id, "service:n:web:80");
        assert!(c.timeout.is_empty() && c.ttl.is_empty() && c.tcp.is_empty());
        assert!(w.is_empty());
    }

    #[test]
    fn http_path_gets_a_leading_slash_and_ipv6_brackets() {
        let env: BTreeMap<String, String> = [("SERVICE_CHECK_HTTP".to_string(), "ping".to_string())].into();
        let keys = Keys::parse(&env, &BTreeMap::new(), &mut vec![]);
        let c = from_keys(&keys, 80, "id", "[fd00::5]:80".parse().unwrap(), &mut vec![]).unwrap();
        assert_eq!(c.http, "http://[fd00::5]:80/ping");
    }

    #[test]
    fn https_with_skip_verify_interval_timeout_deregister() {
        let (c, w) = check(
            &[
                ("SERVICE_CHECK_HTTPS", "/h"),
                ("SERVICE_CHECK_TLS_SKIP_VERIFY", "true"),
                ("SERVICE_CHECK_INTERVAL", "5s"),
                ("SERVICE_CHECK_TIMEOUT", "1s"),
                ("SERVICE_CHECK_DEREGISTER_AFTER", "1m"),
            ],
            80,
        );
        let c = c.unwrap();
        assert_eq!(c.http, "https://10.0.0.5:8080/h");
        assert!(c.tls_skip_verify);
        assert_eq!((c.interval.as_str(), c.timeout.as_str()), ("5s", "1s"));
        assert_eq!(c.deregister_critical_service_after, "1m");
        assert!(w.is_empty());
    }

    #[test]
    fn tcp_needs_a_yes() {
        let (c, _) = check(&[("SERVICE_CHECK_TCP", "true")], 80);
        assert_eq!(c.unwrap().tcp, "10.0.0.5:8080");
        assert_eq!(check(&[("SERVICE_CHECK_TCP", "false")], 80).0, None);
    }

    #[test]
    fn ttl_check_has_no_interval() {
        let (c, _) = check(&[("SERVICE_CHECK_TTL", "30s"), ("SERVICE_CHECK_INTERVAL", "5s")], 80);
        let c = c.unwrap();
        assert_eq!(c.ttl, "30s");
        assert!(c.interval.is_empty());
    }

    #[test]
    fn http_wins_over_tcp_and_ttl() {
        let (c, _) = check(&[("SERVICE_CHECK_HTTP", "/"), ("SERVICE_CHECK_TCP", "1"), ("SERVICE_CHECK_TTL", "5s")], 80);
        let c = c.unwrap();
        assert!(!c.http.is_empty() && c.tcp.is_empty() && c.ttl.is_empty());
    }

    #[test]
    fn per_port_keys_apply_to_their_port_only() {
        let pairs = [("SERVICE_80_CHECK_HTTP", "/a"), ("SERVICE_CHECK_TCP", "1"), ("SERVICE_80_CHECK_INTERVAL", "2s")];
        let c80 = check(&pairs, 80).0.unwrap();
        assert_eq!((c80.http.as_str(), c80.interval.as_str()), ("http://10.0.0.5:8080/a", "2s"));
        let c81 = check(&pairs, 81).0.unwrap();
        assert_eq!((c81.tcp.as_str(), c81.interval.as_str()), ("10.0.0.5:8080", "10s"));
    }

    #[test]
    fn bad_durations_warn_and_fall_back() {
        let (c, w) = check(
            &[("SERVICE_CHECK_HTTP", "/"), ("SERVICE_CHECK_INTERVAL", "often"), ("SERVICE_CHECK_TIMEOUT", "5")],
            80,
        );
        let c = c.unwrap();
        assert_eq!(c.interval, "10s");
        assert!(c.timeout.is_empty());
        assert_eq!(
            w.iter().map(|w| w.key.as_str()).collect::<Vec<_>>(),
            ["SERVICE_CHECK_INTERVAL", "SERVICE_CHECK_TIMEOUT"]
        );
    }

    #[test]
    fn bad_ttl_drops_the_check_with_a_warning() {
        let (c, w) = check(&[("SERVICE_CHECK_TTL", "forever")], 80);
        assert_eq!(c, None);
        assert_eq!(w[0].key, "SERVICE_CHECK_TTL");
    }

    #[test]
    fn initial_status() {
        let (c, _) = check(&[("SERVICE_CHECK_TCP", "1"), ("SERVICE_CHECK_INITIAL_STATUS", "Passing")], 80);
        assert_eq!(c.unwrap().status, "passing");
        let (c, w) = check(&[("SERVICE_CHECK_TCP", "1"), ("SERVICE_CHECK_INITIAL_STATUS", "green")], 80);
        assert!(c.unwrap().status.is_empty());
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn script_checks_are_refused() {
        let (c, w) = check(&[("SERVICE_CHECK_SCRIPT", "rm -rf /")], 80);
        assert_eq!(c, None);
        assert_eq!(w[0].key, "SERVICE_CHECK_SCRIPT");
    }

    #[test]
    fn health_check_follows_the_signal() {
        let c = health("n:web:80", "docker", true);
        assert_eq!(c.check_id, health_check_id("n:web:80"));
        assert_eq!((c.ttl.as_str(), c.status.as_str()), ("30s", "passing"));
        assert_eq!(health("x", "kubernetes", false).status, "critical");
    }
}
