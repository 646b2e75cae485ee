//! `/metrics`: the request series from [`crate::metrics`] plus gauges about
//! the table and the Consul watch, in the Prometheus text format.

use std::fmt::Write;

use crate::discovery::Shared;
use crate::discovery::status::unix_ms;
use crate::metrics::Metrics;

pub fn render(shared: &Shared, metrics: &Metrics) -> String {
    let mut out = String::with_capacity(4096);
    let s = shared.snapshot.load();
    metrics.render(&s.table, &mut out);
    let st = &shared.status;
    let age = if s.built_unix_ms == 0 { -1.0 } else { unix_ms().saturating_sub(s.built_unix_ms) as f64 / 1000.0 };
    let gauges: [(&str, &str, &str, f64); 6] = [
        ("router_routes", "gauge", "Routes in the published table.", s.table.len() as f64),
        ("router_instances", "gauge", "Healthy routed instances the table was built from.", s.instances as f64),
        ("router_table_problems", "gauge", "Tags and override lines skipped as invalid.", s.problems.len() as f64),
        ("router_table_age_seconds", "gauge", "Seconds since the last table update (-1 before the first).", age),
        ("router_consul_errors_total", "counter", "Failed Consul reads.", st.errors() as f64),
        (
            "router_consul_watch_up",
            "gauge",
            "1 while every Consul watch is alive.",
            if st.failing() == 0 { 1.0 } else { 0.0 },
        ),
    ];
    for (name, kind, help, v) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
    }
    out
}
