//! What vipd shows about itself on `--admin-addr`: one plain value the event
//! loop updates after every step, served as JSON on `/status` and rendered
//! as Prometheus text on `/metrics` (pure, tested here).

use std::fmt::Write;

use serde::Serialize;

use crate::packet::{DropCounts, DropReason};
use crate::state::{Machine, State};

/// One tracked URL and its current verdict.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Track {
    pub url: String,
    pub weight: u8,
    pub ok: bool,
}

/// `/status`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Status {
    pub interface: String,
    pub vip: String,
    pub vrid: u8,
    /// `initialize`, `backup` or `master`.
    pub state: &'static str,
    pub configured_priority: u8,
    /// The priority in effect (configured minus failing track weights).
    pub priority: u8,
    pub check_url: Option<String>,
    /// The `--check-url` verdict (true without a check).
    pub check_ok: bool,
    pub tracks: Vec<Track>,
    /// State changes since start.
    pub transitions: u64,
    pub adverts_sent: u64,
    pub adverts_received: u64,
    /// Dropped datagrams by reason (`ttl`, `checksum`, `vrid`...).
    pub drops: Vec<(&'static str, u64)>,
}

pub fn state_name(s: State) -> &'static str {
    match s {
        State::Initialize => "initialize",
        State::Backup => "backup",
        State::Master => "master",
    }
}

impl Status {
    /// Takes the machine's state after a step; counts a transition when the
    /// state changed.
    pub fn follow(&mut self, m: &Machine) {
        let state = state_name(m.state());
        if state != self.state {
            self.transitions += 1;
            self.state = state;
        }
        self.priority = m.priority();
        self.check_ok = m.healthy();
        for (t, failing) in self.tracks.iter_mut().zip(m.tracks_failing()) {
            t.ok = !failing;
        }
    }

    pub fn set_drops(&mut self, drops: &DropCounts) {
        self.drops = DropReason::ALL.iter().map(|r| (r.name(), drops.get(*r))).collect();
    }

    /// The Prometheus text format.
    pub fn metrics(&self) -> String {
        let mut out = String::with_capacity(2048);
        let labels = format!("vip=\"{}\",vrid=\"{}\"", self.vip, self.vrid);
        let mut one = |name: &str, kind: &str, help: &str, series: &[(String, f64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (extra, v) in series {
                let _ = writeln!(out, "{name}{{{labels}{extra}}} {v}");
            }
        };
        let flag = |b: bool| if b { 1.0 } else { 0.0 };
        let states: Vec<(String, f64)> = ["initialize", "backup", "master"]
            .iter()
            .map(|s| (format!(",state=\"{s}\""), flag(*s == self.state)))
            .collect();
        one("vipd_state", "gauge", "1 for the current VRRP state.", &states);
        one(
            "vipd_master",
            "gauge",
            "1 while this node holds the VIP.",
            &[(String::new(), flag(self.state == "master"))],
        );
        one("vipd_priority", "gauge", "The priority in effect.", &[(String::new(), f64::from(self.priority))]);
        one(
            "vipd_configured_priority",
            "gauge",
            "The configured priority.",
            &[(String::new(), f64::from(self.configured_priority))],
        );
        one("vipd_transitions_total", "counter", "State changes.", &[(String::new(), self.transitions as f64)]);
        one("vipd_adverts_sent_total", "counter", "Adverts sent.", &[(String::new(), self.adverts_sent as f64)]);
        one(
            "vipd_adverts_received_total",
            "counter",
            "Valid adverts received from peers.",
            &[(String::new(), self.adverts_received as f64)],
        );
        let drops: Vec<(String, f64)> =
            self.drops.iter().map(|(r, n)| (format!(",reason=\"{r}\""), *n as f64)).collect();
        one("vipd_dropped_total", "counter", "Datagrams dropped, by reason.", &drops);
        one(
            "vipd_check_up",
            "gauge",
            "1 while the --check-url verdict passes.",
            &[(String::new(), flag(self.check_ok))],
        );
        let tracks: Vec<(String, f64)> = self
            .tracks
            .iter()
            .map(|t| (format!(",url=\"{}\",weight=\"{}\"", escape(&t.url), t.weight), flag(t.ok)))
            .collect();
        one("vipd_track_up", "gauge", "1 while a --track-url verdict passes.", &tracks);
        out
    }
}

/// A label value in the text format: backslash, quote and newline escaped.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::Duration;

    use super::*;
    use crate::state::{Config, Event};

    fn status() -> Status {
        Status {
            interface: "eth0".into(),
            vip: "10.0.0.50".into(),
            vrid: 7,
            state: "initialize",
            configured_priority: 150,
            priority: 150,
            check_url: Some("http://127.0.0.1:9998/health".into()),
            check_ok: false,
            tracks: vec![Track { url: "http://127.0.0.1:9998/health/consul".into(), weight: 20, ok: true }],
            transitions: 0,
            adverts_sent: 0,
            adverts_received: 0,
            drops: vec![],
        }
    }

    #[test]
    fn follows_the_machine_and_counts_transitions() {
        let config = Config {
            priority: 150,
            advert_interval: Duration::from_millis(100),
            preempt: true,
            primary: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            track_weights: vec![20],
        };
        let mut m = Machine::new(config, true);
        let mut s = status();
        m.handle(Duration::ZERO, Event::Startup);
        m.handle(Duration::ZERO, Event::Track { index: 0, ok: false });
        s.follow(&m);
        assert_eq!((s.state, s.priority, s.check_ok, s.transitions), ("backup", 130, true, 1));
        assert!(!s.tracks[0].ok);
        s.follow(&m);
        assert_eq!(s.transitions, 1, "no change, no transition");
    }

    #[test]
    fn metrics_have_every_series() {
        let mut s = status();
        s.state = "master";
        s.adverts_sent = 12;
        let mut drops = DropCounts::default();
        drops.count(DropReason::Checksum);
        s.set_drops(&drops);
        let text = s.metrics();
        for line in [
            "vipd_state{vip=\"10.0.0.50\",vrid=\"7\",state=\"master\"} 1\n",
            "vipd_state{vip=\"10.0.0.50\",vrid=\"7\",state=\"backup\"} 0\n",
            "vipd_master{vip=\"10.0.0.50\",vrid=\"7\"} 1\n",
            "vipd_priority{vip=\"10.0.0.50\",vrid=\"7\"} 150\n",
            "vipd_adverts_sent_total{vip=\"10.0.0.50\",vrid=\"7\"} 12\n",
            "vipd_dropped_total{vip=\"10.0.0.50\",vrid=\"7\",reason=\"checksum\"} 1\n",
            "vipd_dropped_total{vip=\"10.0.0.50\",vrid=\"7\",reason=\"ttl\"} 0\n",
            "vipd_check_up{vip=\"10.0.0.50\",vrid=\"7\"} 0\n",
            "vipd_track_up{vip=\"10.0.0.50\",vrid=\"7\",url=\"http://127.0.0.1:9998/health/consul\",weight=\"20\"} 1\n",
            "# TYPE vipd_transitions_total counter\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
