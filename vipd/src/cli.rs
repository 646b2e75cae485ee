//! Command-line flags (the contract in docs/vipd.md); each also reads an environment
//! variable. Durations read like `100ms`, `1s`, `2.5s`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use clap::Parser;
use kit::duration::{Bounds, between};

/// An advert carries the interval in 12 bits of centiseconds: 10ms to
/// 40.95s. Zero would tell backups the master is always overdue.
const ADVERT_INTERVAL: Bounds = between(Duration::from_millis(10), Duration::from_millis(40_950));
/// Probes faster than 10ms would only load the router; slower than an hour
/// would leave a dead router holding the VIP.
const CHECK_INTERVAL: Bounds = between(Duration::from_millis(10), Duration::from_secs(3600));

/// Floats a virtual IP across router nodes with VRRPv3 (RFC 5798),
/// interoperable with keepalived, and gives it up while the local router is
/// unhealthy.
#[derive(Debug, Clone, Parser)]
#[command(name = "vipd", version, about, long_about = None)]
pub struct Cli {
    /// Interface to hold the VIP on and send adverts from.
    #[arg(long, env = "VIPD_INTERFACE")]
    pub interface: String,

    /// The virtual IP, optionally with a prefix length (default /32).
    #[arg(long, env = "VIPD_VIP")]
    pub vip: String,

    /// Virtual router ID (1-255), the same on every node of the group.
    #[arg(long, env = "VIPD_VRID", value_parser = clap::value_parser!(u8).range(1..=255))]
    pub vrid: u8,

    /// Priority (1-255; 255 means this node owns the address).
    #[arg(long, env = "VIPD_PRIORITY", value_parser = clap::value_parser!(u8).range(1..=255))]
    pub priority: u8,

    /// Interval between adverts (10ms steps, at most 40.95s).
    #[arg(long, env = "VIPD_ADVERT_INTERVAL", default_value = "1s", value_parser = ADVERT_INTERVAL)]
    pub advert_interval: Duration,

    /// Do not take the VIP from a lower-priority master.
    #[arg(long, env = "VIPD_NO_PREEMPT")]
    pub no_preempt: bool,

    /// Send adverts by unicast to these peers instead of multicast 224.0.0.18
    /// (repeat the flag, or comma-separate the variable).
    #[arg(long = "peer", env = "VIPD_PEERS", value_delimiter = ',')]
    pub peers: Vec<IpAddr>,

    /// Health URL of the local router (e.g. http://127.0.0.1:9998/health);
    /// while it fails, this node does not claim the VIP.
    #[arg(long, env = "VIPD_CHECK_URL")]
    pub check_url: Option<String>,

    /// Interval between health probes.
    #[arg(long, env = "VIPD_CHECK_INTERVAL", default_value = "200ms", value_parser = CHECK_INTERVAL)]
    pub check_interval: Duration,

    /// Consecutive failures that make the node unhealthy.
    #[arg(long, env = "VIPD_CHECK_FALL", default_value_t = 3)]
    pub check_fall: u32,

    /// Consecutive successes that make it healthy again.
    #[arg(long, env = "VIPD_CHECK_RISE", default_value_t = 2)]
    pub check_rise: u32,

    /// A URL whose failure lowers the advertised priority by the matching
    /// `--track-weight` instead of giving the VIP up (keepalived's weighted
    /// tracking), e.g. the router's http://127.0.0.1:9998/health/consul.
    /// Probed like --check-url (interval, fall, rise). Repeatable.
    #[arg(long = "track-url", env = "VIPD_TRACK_URLS", value_delimiter = ',')]
    pub track_urls: Vec<String>,

    /// How much the priority drops while the `--track-url` at the same
    /// position fails (1-254); one per --track-url, in order.
    #[arg(long = "track-weight", env = "VIPD_TRACK_WEIGHTS", value_delimiter = ',',
          value_parser = clap::value_parser!(u8).range(1..=254))]
    pub track_weights: Vec<u8>,

    /// Address of the admin listener (/status JSON, /metrics).
    #[arg(long, env = "VIPD_ADMIN_ADDR", default_value = "127.0.0.1:9997")]
    pub admin_addr: SocketAddr,
}
