//! Request metrics, recorded on the request path without a lock: the map
//! from (service, route, status) to atomic counters is an immutable map behind
//! arc-swap, read with one atomic load; a key seen for the first time is
//! added by copy-and-swap, which happens once per key, not per request.
//! Rendered as Prometheus text by the admin listener.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;

/// Upper bounds of the latency histogram, in seconds.
pub const BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    pub service: String,
    /// `host/path` of the matched route; empty when no route matched.
    pub route: String,
    pub status: u16,
}

#[derive(Default)]
struct Series {
    count: AtomicU64,
    sum_us: AtomicU64,
    buckets: [AtomicU64; BUCKETS.len()],
}

#[derive(Default)]
pub struct Metrics {
    series: ArcSwap<BTreeMap<Key, Arc<Series>>>,
}

impl Metrics {
    pub fn observe(&self, key: Key, elapsed: Duration) {
        let series = match self.series.load().get(&key) {
            Some(s) => s.clone(),
            None => {
                let fresh = Arc::new(Series::default());
                let mut used = fresh.clone();
                self.series.rcu(|m| {
                    if let Some(s) = m.get(&key) {
                        used = s.clone();
                        return Arc::clone(m);
                    }
                    used = fresh.clone();
                    let mut next = BTreeMap::clone(m);
                    next.insert(key.clone(), fresh.clone());
                    Arc::new(next)
                });
                used
            }
        };
        let secs = elapsed.as_secs_f64();
        series.count.fetch_add(1, Ordering::Relaxed);
        series.sum_us.fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
        // One counter per observation: buckets are stored per range and made
        // cumulative when rendered, so a request costs one atomic add here.
        if let Some(i) = BUCKETS.iter().position(|le| secs <= *le) {
            series.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `router_requests_total` and `router_request_duration_seconds` in the
    /// Prometheus text format (version 0.0.4).
    pub fn render(&self, out: &mut String) {
        let map = self.series.load();
        out.push_str("# HELP router_requests_total Proxied requests by service, route and status.\n");
        out.push_str("# TYPE router_requests_total counter\n");
        for (k, s) in map.iter() {
            let _ = writeln!(out, "router_requests_total{{{}}} {}", labels(k), s.count.load(Ordering::Relaxed));
        }
        out.push_str("# HELP router_request_duration_seconds Time to the upstream's response headers.\n");
        out.push_str("# TYPE router_request_duration_seconds histogram\n");
        for (k, s) in map.iter() {
            let l = labels(k);
            let mut cumulative = 0;
            for (i, le) in BUCKETS.iter().enumerate() {
                cumulative += s.buckets[i].load(Ordering::Relaxed);
                let _ = writeln!(out, "router_request_duration_seconds_bucket{{{l},le=\"{le}\"}} {cumulative}");
            }
            let count = s.count.load(Ordering::Relaxed);
            let _ = writeln!(out, "router_request_duration_seconds_bucket{{{l},le=\"+Inf\"}} {count}");
            let sum = s.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(out, "router_request_duration_seconds_sum{{{l}}} {sum}");
            let _ = writeln!(out, "router_request_duration_seconds_count{{{l}}} {count}");
        }
    }
}

fn labels(k: &Key) -> String {
    format!("service=\"{}\",route=\"{}\",status=\"{}\"", escape(&k.service), escape(&k.route), k.status)
}

/// Label value escaping of the text format: backslash, quote, newline.
pub fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(status: u16) -> Key {
        Key { service: "web".into(), route: "a.com/".into(), status }
    }

    #[test]
    fn counts_and_buckets() {
        let m = Metrics::default();
        m.observe(key(200), Duration::from_millis(3));
        m.observe(key(200), Duration::from_millis(300));
        m.observe(key(502), Duration::from_secs(20));
        let mut out = String::new();
        m.render(&mut out);
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
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
