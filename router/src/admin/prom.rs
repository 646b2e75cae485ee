//! `/metrics`: the request series from [`crate::metrics`] plus gauges about
//! the table and the Consul watch, in the Prometheus text format.

use std::fmt::Write;
use std::time::Duration;

use crate::discovery::Shared;
use crate::discovery::status::unix_ms;
use crate::metrics::Metrics;

pub fn render(shared: &Shared, metrics: &Metrics, max_stale: Duration, tls: Option<&crate::tls::Tls>) -> String {
    let mut out = String::with_capacity(4096);
    let s = shared.snapshot.load();
    metrics.render(&s.table, &mut out);
    metrics.render_protocols(&mut out);
    if let Some(t) = tls {
        render_tls(t, &mut out);
    }
    let st = &shared.status;
    let age = if s.built_unix_ms == 0 { -1.0 } else { unix_ms().saturating_sub(s.built_unix_ms) as f64 / 1000.0 };
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    let seen = st.leader_seen_ago().map_or(-1.0, |d| d.as_secs_f64());
    let gauges: [(&str, &str, &str, f64); 10] = [
        ("router_routes", "gauge", "Routes in the published table.", s.table.len() as f64),
        ("router_instances", "gauge", "Healthy routed instances the table was built from.", s.instances as f64),
        ("router_table_problems", "gauge", "Tags and override lines skipped as invalid.", s.problems.len() as f64),
        ("router_table_age_seconds", "gauge", "Seconds since the last table update (-1 before the first).", age),
        ("router_consul_errors_total", "counter", "Failed Consul reads.", st.errors() as f64),
        ("router_consul_watch_up", "gauge", "1 while every Consul watch is alive.", flag(st.failing() == 0)),
        (
            "router_consul_reachable",
            "gauge",
            "1 while the Consul agent answers the liveness probe.",
            flag(st.reachable()),
        ),
        (
            "router_consul_healthy",
            "gauge",
            "1 while /health/consul passes (reachable, watches alive, leader seen within --consul-max-stale).",
            flag(st.consul_problem(max_stale).is_none()),
        ),
        (
            "router_consul_last_contact_seconds",
            "gauge",
            "X-Consul-LastContact of the latest answer.",
            st.last_contact_ms() as f64 / 1000.0,
        ),
        (
            "router_consul_leader_seen_seconds",
            "gauge",
            "Seconds since a Consul leader in contact was last seen (-1: never).",
            seen,
        ),
    ];
    for (name, kind, help, v) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
    }
    out
}
/// `router_tls_handshakes_total{result}` and
/// `router_tls_certificate_expiry_seconds{name}` (Unix time of `notAfter`).
fn render_tls(tls: &crate::tls::Tls, out: &mut String) {
    out.push_str("# HELP router_tls_handshakes_total TLS handshakes by how they ended.\n");
    out.push_str("# TYPE router_tls_handshakes_total counter\n");
    for (result, n) in tls.handshakes.rows() {
        let _ = writeln!(out, "router_tls_handshakes_total{{result=\"{result}\"}} {n}");
    }
    if let Some(acme) = tls.acme.load().as_deref() {
        out.push_str("# HELP router_acme_orders_total ACME orders this node completed, by result.\n");
        out.push_str("# TYPE router_acme_orders_total counter\n");
        for (result, n) in [("issued", &acme.orders.issued), ("failed", &acme.orders.failed)] {
            let _ = writeln!(
                out,
                "router_acme_orders_total{{result=\"{result}\"}} {}",
                n.load(std::sync::atomic::Ordering::Relaxed)
            );
        }
    }
    out.push_str("# HELP router_tls_certificate_expiry_seconds Unix time a served certificate expires.\n");
    out.push_str("# TYPE router_tls_certificate_expiry_seconds gauge\n");
    let store = tls.resolver.store.load();
    for (info, _) in store.certs() {
        let _ = writeln!(
            out,
            "router_tls_certificate_expiry_seconds{{name=\"{}\",source=\"{}\"}} {}",
            crate::metrics::escape(&info.name),
            crate::metrics::escape(&info.source),
            info.not_after
        );
    }
}
