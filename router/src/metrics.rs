//! Request metrics as Prometheus text. The counters live with the routes
//! ([`router::routes::stats`]): the proxy records into the `&Route` it just
//! looked up, so the request path takes no lock, does no map lookup and
//! allocates nothing for metrics; only requests that matched no route are
//! counted here. Rendering walks the current table.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::Version;

use router::routes::Table;
use router::routes::stats::{BUCKETS, RouteStats, Series};
use router::routes::tcp::TcpStats;

use crate::proxy::answer::Failures;

/// Counters of requests that matched no route (service and route labels
/// empty), and of failed attempts at targets.
#[derive(Default)]
pub struct Metrics {
    unrouted: RouteStats,
    pub failures: Failures,
    /// Requests by protocol ([`PROTOCOLS`]) and whether TLS carried them.
    by_protocol: [[AtomicU64; 2]; 3],
}

/// Protocol labels of `router_requests_by_protocol_total`.
const PROTOCOLS: [&str; 3] = ["http/1.0", "http/1.1", "h2"];

impl Metrics {
    /// Counts one request by its HTTP version and whether it came over TLS.
    pub fn count_protocol(&self, version: Version, tls: bool) {
        let p = match version {
            Version::HTTP_2 => 2,
            Version::HTTP_11 => 1,
            _ => 0,
        };
        self.by_protocol[p][usize::from(tls)].fetch_add(1, Ordering::Relaxed);
    }

    /// `router_requests_by_protocol_total{protocol,tls}`.
    pub fn render_protocols(&self, out: &mut String) {
        out.push_str(
            "# HELP router_requests_by_protocol_total Requests by HTTP version and whether TLS carried them.\n",
        );
        out.push_str("# TYPE router_requests_by_protocol_total counter\n");
        for (name, row) in PROTOCOLS.iter().zip(&self.by_protocol) {
            for (tls, n) in row.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "router_requests_by_protocol_total{{protocol=\"{name}\",tls=\"{}\"}} {}",
                    tls == 1,
                    n.load(Ordering::Relaxed)
                );
            }
        }
    }

    pub fn observe_unrouted(&self, status: u16, elapsed: Duration) {
        self.unrouted.observe(status, elapsed);
    }

    /// `router_requests_total` and `router_request_duration_seconds` in the
    /// Prometheus text format (version 0.0.4), series sorted by service,
    /// route and status. Only routes in `table` are shown: a route that left
    /// the table takes its series with it, and starts from 0 if it returns.
    pub fn render(&self, table: &Table, out: &mut String) {
        let mut rows: Vec<(&str, String, u16, &Series)> = Vec::new();
        for (service, route, stats) in table
            .routes()
            .iter()
            .map(|r| (r.service.as_str(), format!("{}{}", r.host, r.path), &*r.stats))
            .chain(std::iter::once(("", String::new(), &self.unrouted)))
        {
            for s in stats.series() {
                rows.push((service, route.clone(), s.status, s));
            }
        }
        rows.sort_by(|a, b| (a.0, &a.1, a.2).cmp(&(b.0, &b.1, b.2)));
        out.push_str("# HELP router_requests_total Proxied requests by service, route and status.\n");
        out.push_str("# TYPE router_requests_total counter\n");
        for (service, route, status, s) in &rows {
            let _ = writeln!(out, "router_requests_total{{{}}} {}", labels(service, route, *status), s.count());
        }
        out.push_str("# HELP router_request_duration_seconds Time to the upstream's response headers.\n");
        out.push_str("# TYPE router_request_duration_seconds histogram\n");
        for (service, route, status, s) in &rows {
            let l = labels(service, route, *status);
            let mut cumulative = 0;
            for (n, le) in s.buckets().iter().zip(BUCKETS) {
                cumulative += n;
                let _ = writeln!(out, "router_request_duration_seconds_bucket{{{l},le=\"{le}\"}} {cumulative}");
            }
            let count = s.count();
            let _ = writeln!(out, "router_request_duration_seconds_bucket{{{l},le=\"+Inf\"}} {count}");
            let sum = s.sum().as_micros() as f64 / 1e6;
            let _ = writeln!(out, "router_request_duration_seconds_sum{{{l}}} {sum}");
            let _ = writeln!(out, "router_request_duration_seconds_count{{{l}}} {count}");
        }
        self.failures.render(out);
        render_ejections(table, out);
        render_tcp(table, out);
    }
}

/// Picks one counter out of a TCP route's stats.
type Counter = fn(&TcpStats) -> &AtomicU64;

/// The TCP and TLS passthrough routes' counters, one series per route (and
/// direction for bytes); `route` is `:PORT` or the passthrough host.
fn render_tcp(table: &Table, out: &mut String) {
    let routes = || table.tcp_routes().iter().chain(table.passthrough_routes());
    let label =
        |r: &router::routes::TcpRoute| format!("service=\"{}\",route=\"{}\"", escape(&r.service), escape(&r.source));
    let counters: [(&str, &str, Counter); 3] = [
        ("router_tcp_connections_total", "Connections proxied by TCP route.", |s| &s.connections),
        ("router_tcp_connect_failures_total", "Failed connection attempts to a TCP route's targets.", |s| {
            &s.connect_failures
        }),
        ("router_tcp_unserved_total", "Clients closed because no target of the TCP route answered.", |s| &s.unserved),
    ];
    for (name, help, counter) in counters {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for r in routes() {
            let _ = writeln!(out, "{name}{{{}}} {}", label(r), TcpStats::get(counter(&r.stats)));
        }
    }
    out.push_str("# HELP router_tcp_bytes_total Bytes copied by TCP route; direction in is client to target.\n");
    out.push_str("# TYPE router_tcp_bytes_total counter\n");
    for r in routes() {
        let l = label(r);
        let _ = writeln!(out, "router_tcp_bytes_total{{{l},direction=\"in\"}} {}", TcpStats::get(&r.stats.bytes_in));
        let _ = writeln!(out, "router_tcp_bytes_total{{{l},direction=\"out\"}} {}", TcpStats::get(&r.stats.bytes_out));
    }
}

/// `router_target_ejections_total` for each target ejected at least once
/// (a series per target of every route would be most of the output with
/// 10,000 routes), and `router_targets_ejected` now.
fn render_ejections(table: &Table, out: &mut String) {
    let now = std::time::Instant::now();
    let mut ejected_now = 0;
    out.push_str(
        "# HELP router_target_ejections_total Times a target was skipped for refusing or dropping connections.\n",
    );
    out.push_str("# TYPE router_target_ejections_total counter\n");
    for r in table.routes() {
        for (t, h) in r.targets.iter().zip(r.health.iter()) {
            let n = h.ejections();
            if n == 0 {
                continue;
            }
            ejected_now += usize::from(h.view(now).ejected);
            let _ = writeln!(
                out,
                "router_target_ejections_total{{service=\"{}\",route=\"{}{}\",target=\"{}\"}} {n}",
                escape(&t.service),
                escape(&r.host),
                escape(&r.path),
                escape(&t.url.to_string())
            );
        }
    }
    out.push_str("# HELP router_targets_ejected Targets skipped by passive health right now.\n");
    out.push_str("# TYPE router_targets_ejected gauge\n");
    let _ = writeln!(out, "router_targets_ejected {ejected_now}");
}

fn labels(service: &str, route: &str, status: u16) -> String {
    format!("service=\"{}\",route=\"{}\",status=\"{}\"", escape(service), escape(route), status)
}

/// Label value escaping of the text format: backslash, quote, newline.
pub fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use router::routes::Instance;

    fn table() -> Table {
        let web = Instance {
            service: "web".into(),
            id: "w1".into(),
            address: "127.0.0.1".into(),
            port: 1,
            tags: vec!["urlprefix-a.com/".into()],
        };
        Table::build(&[web], "", "urlprefix-").0
    }

    #[test]
    fn counts_and_buckets() {
        let t = table();
        let m = Metrics::default();
        let r = t.lookup("a.com", "/", false).expect("route");
        r.stats.observe(200, Duration::from_millis(3));
        r.stats.observe(200, Duration::from_millis(300));
        r.stats.observe(502, Duration::from_secs(20));
        let mut out = String::new();
        m.render(&t, &mut out);
        assert!(out.contains("router_requests_total{service=\"web\",route=\"a.com/\",status=\"200\"} 2\n"), "{out}");
        assert!(out.contains("router_requests_total{service=\"web\",route=\"a.com/\",status=\"502\"} 1\n"));
        assert!(out.contains("status=\"200\",le=\"0.005\"} 1\n"));
        assert!(out.contains("status=\"200\",le=\"0.5\"} 2\n"));
        assert!(out.contains("status=\"502\",le=\"10\"} 0\n"));
        assert!(out.contains("status=\"502\",le=\"+Inf\"} 1\n"));
        assert!(
            out.contains(
                "router_request_duration_seconds_sum{service=\"web\",route=\"a.com/\",status=\"200\"} 0.303\n"
            )
        );
    }

    #[test]
    fn unrouted_requests_have_empty_labels_and_series_are_sorted() {
        let t = table();
        let m = Metrics::default();
        t.lookup("a.com", "/", false).expect("route").stats.observe(502, Duration::from_millis(1));
        t.lookup("a.com", "/", false).expect("route").stats.observe(200, Duration::from_millis(1));
        m.observe_unrouted(404, Duration::from_millis(1));
        let mut out = String::new();
        m.render(&t, &mut out);
        let totals: Vec<&str> = out.lines().filter(|l| l.starts_with("router_requests_total{")).collect();
        assert_eq!(
            totals,
            [
                "router_requests_total{service=\"\",route=\"\",status=\"404\"} 1",
                "router_requests_total{service=\"web\",route=\"a.com/\",status=\"200\"} 1",
                "router_requests_total{service=\"web\",route=\"a.com/\",status=\"502\"} 1",
            ]
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
