//! TCP routes (fabio's `urlprefix-:PORT proto=tcp`, and `route add SVC :PORT
//! tcp://ADDR:PORT` in the overrides): every connection to the router's PORT
//! goes to one of the route's targets, bytes copied both ways.
//!
//! A TCP route is assembled with the HTTP routes (same weights, same `route
//! del`/`route weight` commands, its source is `:PORT`) and split off when
//! the table is finished, so it lives in the same immutable table. Which
//! ports may be opened at all is `--tcp-ports` ([`PortRanges`]): a tag is set
//! by whoever runs a container, and must not make the edge listen anywhere.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use super::Strategy;
use super::pick::Picker;
use super::table::Target;

/// Route sources of TCP routes are `:PORT`: the port, if `source_host` is one.
pub fn port_of(source_host: &str) -> Option<u16> {
    source_host.strip_prefix(':').and_then(|p| p.parse().ok())
}

/// Parses the `:PORT` of a TCP route source: digits only, 1-65535.
pub fn parse_source(s: &str) -> Result<u16, String> {
    let digits = s.strip_prefix(':').unwrap_or(s);
    let plain = !digits.is_empty() && digits.len() <= 5 && digits.bytes().all(|b| b.is_ascii_digit());
    match digits.parse::<u16>() {
        Ok(p) if plain && p != 0 => Ok(p),
        _ => Err(format!("'{s}' is not a TCP route source :PORT (port 1-65535)")),
    }
}

/// Counters of one TCP route, kept across table rebuilds like [`super::stats::RouteStats`].
#[derive(Debug, Default)]
pub struct TcpStats {
    pub connections: AtomicU64,
    /// From clients to the targets.
    pub bytes_in: AtomicU64,
    /// From the targets to clients.
    pub bytes_out: AtomicU64,
    /// Connection attempts to a target that failed or timed out.
    pub connect_failures: AtomicU64,
    /// Clients closed because no target could be reached.
    pub unserved: AtomicU64,
}

impl TcpStats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// One TCP route: the listener port and where its connections go.
#[derive(Debug, Serialize)]
pub struct TcpRoute {
    pub port: u16,
    /// `:PORT`, as the route's source is written.
    pub source: String,
    /// The services behind the route, sorted, comma-separated.
    pub service: String,
    /// Each with its own options (`pxyproto=`), as fabio's are per target.
    pub targets: Vec<Target>,
    #[serde(skip)]
    pub(super) picker: Picker,
    #[serde(skip)]
    pub stats: Arc<TcpStats>,
}

impl TcpRoute {
    /// Picks a target as [`super::Route::pick`] does.
    pub fn pick(&self, strategy: Strategy, exclude: &[usize]) -> Option<(usize, &Target)> {
        let i = self.picker.pick(strategy, exclude)?;
        self.targets.get(i).map(|t| (i, t))
    }
}

/// `--tcp-ports`: the ports TCP routes may open, `LO-HI` or `PORT` items
/// separated by commas. Empty (the default): none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortRanges(Vec<(u16, u16)>);

impl PortRanges {
    pub fn contains(&self, port: u16) -> bool {
        self.0.iter().any(|&(lo, hi)| (lo..=hi).contains(&port))
    }
}

impl FromStr for PortRanges {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().is_empty() {
            return Ok(PortRanges::default());
        }
        let port = |p: &str| parse_source(p.trim()).map_err(|_| format!("'{p}' is not a port 1-65535"));
        s.split(',')
            .map(|item| match item.split_once('-') {
                Some((lo, hi)) => {
                    let (lo, hi) = (port(lo)?, port(hi)?);
                    if lo > hi { Err(format!("range '{item}' runs backwards")) } else { Ok((lo, hi)) }
                }
                None => port(item).map(|p| (p, p)),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(PortRanges)
    }
}

impl fmt::Display for PortRanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        let items: Vec<String> =
            self.0.iter().map(|&(lo, hi)| if lo == hi { lo.to_string() } else { format!("{lo}-{hi}") }).collect();
        f.write_str(&items.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn port_ranges() {
        let r: PortRanges = "5000-5010, 6443,7000-7000".parse().unwrap();
        assert!(r.contains(5000) && r.contains(5010) && r.contains(6443) && r.contains(7000));
        assert!(!r.contains(4999) && !r.contains(5011) && !r.contains(6444));
        assert_eq!(r.to_string(), "5000-5010,6443,7000");
        let none: PortRanges = "".parse().unwrap();
        assert!(!none.contains(80));
        assert_eq!(none.to_string(), "none");
        for bad in ["0", "65536", "10-5", "a", "1-", "-5", "5,,6", "+5", "1-2-3", "80 81"] {
            assert!(bad.parse::<PortRanges>().is_err(), "{bad}");
        }
        assert!("1-65535".parse::<PortRanges>().unwrap().contains(65535));
    }

    #[test]
    fn sources() {
        assert_eq!(parse_source(":5000"), Ok(5000));
        assert_eq!(port_of(":6443"), Some(6443));
        assert_eq!(port_of("example.com"), None);
        for bad in [":0", ":", ":65536", ":+1", ": 1", ":1/", ":123456"] {
            assert!(parse_source(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #![proptest_config(crate::routes::proptest_config(2000))]

        #[test]
        fn ranges_parse_or_say_why(s in "[0-9,\\- ]{0,24}") {
            if let Ok(r) = s.parse::<PortRanges>() {
                // What is shown parses back to the same ranges.
                let shown = r.to_string();
                if shown != "none" {
                    prop_assert_eq!(shown.parse::<PortRanges>(), Ok(r));
                }
            }
        }

        #[test]
        fn membership_matches_the_bounds(lo in 1u16.., hi in 1u16.., p in 1u16..) {
            let (lo, hi) = (lo.min(hi), lo.max(hi));
            let r: PortRanges = format!("{lo}-{hi}").parse().unwrap();
            prop_assert_eq!(r.contains(p), lo <= p && p <= hi);
        }
    }
}
