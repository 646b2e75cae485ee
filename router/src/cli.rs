//! Command-line flags (the contract in docs/router.md); each also reads an environment
//! variable so the router can be configured from a unit file or a pod spec.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::TypedValueParser;
use clap::{ArgAction, Parser, ValueEnum};
use kit::duration::{Bounds, between};
use router::routes;
use router::routes::PortRanges;
use router::routes::options::Cidr;

const MS: Duration = Duration::from_millis(1);
const SEC: Duration = Duration::from_secs(1);
const DAY: Duration = Duration::from_secs(86_400);

/// Bounds of the duration flags (docs/router.md). Timeouts: a zero one
/// would fail every request, and a day is far past any client's patience
/// while far from overflowing `Instant` arithmetic.
const TIMEOUT: Bounds = between(MS, DAY);
const GRACE: Bounds = between(Duration::ZERO, Duration::from_secs(3600));
/// Consul caps a blocking query's wait at 10 minutes.
const CONSUL_WAIT: Bounds = between(Duration::from_millis(100), Duration::from_secs(600));
const MAX_STALE: Bounds = between(Duration::from_millis(100), Duration::from_secs(3600));
/// Merging stops at 50 ms (discovery's MAX_COALESCE) whatever this says.
const COALESCE: Bounds = between(Duration::ZERO, SEC);
/// ACME: renewing more than a year ahead, or retrying after more than a
/// week, is no setting anyone means.
const ACME_RENEW_BEFORE: Bounds = between(SEC, Duration::from_secs(365 * 86_400));
const ACME_RETRY: Bounds = between(SEC, Duration::from_secs(7 * 86_400));

/// `--strategy`: how one instance is picked among a route's targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Strategy {
    /// Round robin, in proportion to weights.
    Rr,
    /// Random, in proportion to weights.
    Rnd,
}

impl From<Strategy> for routes::Strategy {
    fn from(s: Strategy) -> Self {
        match s {
            Strategy::Rr => routes::Strategy::Rr,
            Strategy::Rnd => routes::Strategy::Rnd,
        }
    }
}

/// Lowest TLS version the TLS listeners accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TlsVersion {
    #[value(name = "1.2")]
    V12,
    #[value(name = "1.3")]
    V13,
}

/// The challenge the ordering node asks the ACME server to validate (every
/// node answers both kinds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AcmeChallenge {
    /// On the plain-HTTP listeners (the CA connects to port 80).
    #[value(name = "http-01")]
    Http01,
    /// On the TLS listeners, ALPN `acme-tls/1` (the CA connects to port 443).
    #[value(name = "tls-alpn-01")]
    TlsAlpn01,
}

/// One certificate store (`--cert-source`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertSource {
    /// `dir:PATH`: PEM files in a directory, watched.
    Dir(PathBuf),
    /// `consul:PREFIX`: keys under a Consul KV prefix (kept ending in `/`),
    /// followed with a blocking query.
    Consul(String),
}

impl std::str::FromStr for CertSource {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once(':') {
            Some(("dir", p)) if !p.is_empty() => Ok(CertSource::Dir(PathBuf::from(p))),
            Some(("consul", p)) if !p.trim_matches('/').is_empty() => {
                Ok(CertSource::Consul(format!("{}/", p.trim_matches('/'))))
            }
            _ => Err(format!("{s:?}: expected dir:PATH or consul:PREFIX")),
        }
    }
}

impl std::fmt::Display for CertSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CertSource::Dir(p) => write!(f, "dir:{}", p.display()),
            CertSource::Consul(p) => write!(f, "consul:{p}"),
        }
    }
}

/// HTTP router for services registered in Consul with `urlprefix-` tags.
#[derive(Debug, Clone, Parser)]
#[command(name = "router", version, about, long_about = None)]
pub struct Cli {
    /// Consul agent HTTP address.
    #[arg(long, env = "CONSUL_HTTP_ADDR", default_value = "http://127.0.0.1:8500")]
    pub consul_addr: String,

    /// Consul ACL token.
    #[arg(long, env = "CONSUL_HTTP_TOKEN", hide_env_values = true)]
    pub consul_token: Option<String>,

    /// Other Consul agents or servers (e.g. the other edge nodes' servers),
    /// asked in order while --consul-addr (once it has answered) refuses
    /// connections or drops a read (its agent died), so the table stays
    /// fresh and this node keeps the VIP; repeat the flag (or
    /// comma-separate the variable).
    #[arg(long = "consul-fallback-addr", env = "ROUTER_CONSUL_FALLBACK_ADDRS", value_delimiter = ',')]
    pub consul_fallback_addrs: Vec<String>,

    /// Address the proxy listens on; repeat the flag (or comma-separate the
    /// variable) for several.
    #[arg(long, env = "ROUTER_PROXY_ADDR", default_value = "0.0.0.0:9999", value_delimiter = ',')]
    pub proxy_addr: Vec<SocketAddr>,

    /// Address of the admin listener (UI, /api/routes, /health, /metrics).
    #[arg(long, env = "ROUTER_ADMIN_ADDR", default_value = "127.0.0.1:9998")]
    pub admin_addr: SocketAddr,

    /// Tag prefix that marks a route in a service's tags.
    #[arg(long, env = "ROUTER_TAG_PREFIX", default_value = "urlprefix-")]
    pub tag_prefix: String,

    /// Load-balancing strategy among a route's targets.
    #[arg(long, env = "ROUTER_STRATEGY", value_enum, default_value = "rr")]
    pub strategy: Strategy,

    /// Consul KV key holding route overrides (`route add|del|weight` lines).
    #[arg(long, env = "ROUTER_OVERRIDES_KEY", default_value = "router/config")]
    pub overrides_key: String,

    /// Longest wait for an upstream's response headers before answering 504
    /// (e.g. `30s`, `2.5s`, `500ms`).
    #[arg(long, env = "ROUTER_UPSTREAM_TIMEOUT", default_value = "30s", value_parser = TIMEOUT)]
    pub upstream_timeout: Duration,

    /// Longest wait for a TCP (and TLS) connection to an upstream; an
    /// idempotent request that cannot connect is retried on another instance.
    #[arg(long, env = "ROUTER_CONNECT_TIMEOUT", default_value = "2s", value_parser = TIMEOUT)]
    pub connect_timeout: Duration,

    /// How long a client has to send each request's headers, counted from
    /// when the connection is ready for a request (idle keep-alive time
    /// included); then the connection is closed. Guards against clients that
    /// hold connections open without sending (slowloris).
    #[arg(long, env = "ROUTER_HEADER_TIMEOUT", default_value = "30s", value_parser = TIMEOUT)]
    pub header_timeout: Duration,

    /// Largest request head (request line and header lines) in bytes; a
    /// larger one is answered 431 and the connection closed.
    #[arg(long, env = "ROUTER_MAX_HEADER_BYTES", default_value_t = 64 * 1024,
          value_parser = clap::value_parser!(u32).range(8 * 1024..=1024 * 1024).map(|v| v as usize))]
    pub max_header_bytes: usize,

    /// Most header lines in a request head; more are answered 431.
    #[arg(long, env = "ROUTER_MAX_HEADERS", default_value_t = 100,
          value_parser = clap::value_parser!(u16).range(16..=1000).map(usize::from))]
    pub max_headers: usize,

    /// Longest service tag kept, in bytes; a longer one is skipped and shown
    /// as a problem naming the service (tags are set by whoever runs a
    /// container, so their size is not trusted).
    #[arg(long, env = "ROUTER_MAX_TAG_BYTES", default_value_t = 4096,
          value_parser = clap::value_parser!(u32).range(256..=65536).map(|v| v as usize))]
    pub max_tag_bytes: usize,

    /// Largest overrides text (the Consul KV value) applied, in bytes; a
    /// larger one is a problem and the last accepted overrides stay.
    #[arg(long, env = "ROUTER_MAX_OVERRIDES_BYTES", default_value_t = 512 * 1024,
          value_parser = clap::value_parser!(u32).range(1024..=16 * 1024 * 1024).map(|v| v as usize))]
    pub max_overrides_bytes: usize,

    /// On SIGTERM/SIGINT: how long in-flight requests may still run after the
    /// listeners close.
    #[arg(long, env = "ROUTER_SHUTDOWN_GRACE", default_value = "10s", value_parser = GRACE)]
    pub shutdown_grace: Duration,

    /// Wait time of each Consul blocking query; a query without an answer
    /// after twice this is abandoned and restarted.
    #[arg(long, env = "ROUTER_CONSUL_WAIT", default_value = "60s", value_parser = CONSUL_WAIT)]
    pub consul_wait: Duration,

    /// Longest `X-Consul-LastContact` of an answer still taken as fresh, and
    /// how long no leader may be seen before `/health/consul` fails. Longer
    /// than a leader election, so an election fails no node.
    #[arg(long, env = "ROUTER_CONSUL_MAX_STALE", default_value = "10s", value_parser = MAX_STALE)]
    pub consul_max_stale: Duration,

    /// Admin address of the local vipd (its `/status` is shown on the page
    /// and in `/api/status` as `vip`).
    #[arg(long, env = "ROUTER_VIPD_ADDR")]
    pub vipd_addr: Option<SocketAddr>,

    /// Threads that serve connections, 1-1024. Default: the CPUs the process
    /// may run on (its affinity mask, as `taskset` or a container's cpuset
    /// sets it, and a cgroup CPU limit). With 1, connections are served on
    /// the main thread (tokio's current-thread scheduler; blocking jobs such
    /// as reading certificate files still get short-lived threads): no work
    /// stealing, and while the process has one thread the kernel takes its
    /// fast path on every socket call.
    #[arg(long, env = "ROUTER_THREADS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,

    /// Address TCP routes (`urlprefix-:PORT proto=tcp`) listen on.
    #[arg(long, env = "ROUTER_TCP_BIND", default_value = "0.0.0.0")]
    pub tcp_bind: IpAddr,

    /// Ports TCP routes may open: `LO-HI` or `PORT` items, comma-separated
    /// (e.g. `5000-5100,6443`). Default: none, so a tag cannot make the
    /// router listen anywhere; a route outside is a problem.
    #[arg(long, env = "ROUTER_TCP_PORTS", default_value = "")]
    pub tcp_ports: PortRanges,

    /// A TCP route's connection with no byte in either direction for this
    /// long is closed.
    #[arg(long, env = "ROUTER_TCP_IDLE_TIMEOUT", default_value = "1h", value_parser = TIMEOUT)]
    pub tcp_idle_timeout: Duration,

    /// Peers (CIDR blocks or addresses, comma-separated) whose connections
    /// must start with a PROXY protocol header (v1 or v2); the address in it
    /// is the client's. A PROXY header from any other peer is refused.
    #[arg(long, env = "ROUTER_PROXY_PROTOCOL_FROM", value_delimiter = ',')]
    pub proxy_protocol_from: Vec<Cidr>,

    /// How long a peer in --proxy-protocol-from has to send its PROXY header.
    #[arg(long, env = "ROUTER_PROXY_PROTOCOL_TIMEOUT", default_value = "5s", value_parser = TIMEOUT)]
    pub proxy_protocol_timeout: Duration,

    /// How long to merge a burst of Consul changes into one table update.
    #[arg(long, env = "ROUTER_COALESCE", default_value = "3ms", value_parser = COALESCE)]
    pub coalesce: Duration,

    /// Normalise request paths before routing and forward the normalised
    /// path (`%2F` decoded, `.`/`..` removed, `//` merged); `false` keeps
    /// raw paths.
    #[arg(long, env = "ROUTER_PATH_NORMALIZE", default_value_t = true, action = ArgAction::Set)]
    pub path_normalize: bool,

    /// Peers (CIDR blocks, comma-separated) whose `X-Forwarded-Proto`,
    /// `X-Forwarded-Port`, `X-Forwarded-Host` and `X-Real-Ip` are kept; from
    /// anyone else they are overwritten. Default: none.
    #[arg(long, env = "ROUTER_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<Cidr>,

    /// Status answered when no route takes a request.
    #[arg(long, env = "ROUTER_NO_ROUTE_STATUS", default_value_t = 404,
          value_parser = clap::value_parser!(u16).range(200..=599))]
    pub no_route_status: u16,

    /// Consul KV key holding an HTML page answered (with
    /// `--no-route-status`) when no route takes a request; an absent or
    /// empty key gives a plain-text line. Empty: no page is read.
    #[arg(long, env = "ROUTER_NO_ROUTE_HTML_KEY", default_value = "router/noroute.html")]
    pub no_route_html_key: String,

    /// Access log: `stdout`, `stderr`, a file path (appended to) or `off`.
    #[arg(long, env = "ROUTER_ACCESS_LOG", default_value = "off")]
    pub access_log: router::access::Target,

    /// Access log line format: `common`, `combined`, `json`, or a template
    /// of `$fields` (docs/router.md lists them).
    #[arg(long, env = "ROUTER_ACCESS_LOG_FORMAT", default_value = "common", value_parser = router::access::Format::parse)]
    pub access_log_format: router::access::Format,

    /// Request ID header: passed upstream and logged; generated (a UUID)
    /// when the request has none. Unset: no request IDs.
    #[arg(long, env = "ROUTER_REQUEST_ID_HEADER", value_parser = header_name)]
    pub request_id_header: Option<String>,

    /// Address of a TLS (HTTPS) listener, e.g. `0.0.0.0:443`; repeat the flag
    /// (or comma-separate the variable) for several. Needs `--cert-source`.
    #[arg(long, env = "ROUTER_TLS_ADDR", value_delimiter = ',')]
    pub tls_addr: Vec<SocketAddr>,

    /// A certificate store, `dir:PATH` or `consul:PREFIX`; repeatable (or
    /// comma-separated in the variable), read in order: on a name two
    /// certificates claim, the first store's wins.
    #[arg(long, env = "ROUTER_CERT_SOURCE", value_delimiter = ',')]
    pub cert_source: Vec<CertSource>,

    /// Name (`NAME` of `NAME.pem`) of the certificate served when no other
    /// covers the client's SNI, or the client sent none; default: the first
    /// loaded.
    #[arg(long, env = "ROUTER_TLS_DEFAULT_CERT")]
    pub tls_default_cert: Option<String>,

    /// Refuse the handshake when no certificate covers the client's SNI
    /// instead of serving the default one (clients without SNI still get it).
    #[arg(long, env = "ROUTER_TLS_STRICT_SNI")]
    pub tls_strict_sni: bool,

    /// Lowest TLS version accepted.
    #[arg(long, env = "ROUTER_TLS_MIN_VERSION", value_enum, default_value = "1.2")]
    pub tls_min_version: TlsVersion,

    /// Answer plain-HTTP requests for a host some certificate covers with a
    /// 308 to the same URL over https (except ACME HTTP-01 challenges).
    #[arg(long, env = "ROUTER_HTTPS_REDIRECT")]
    pub https_redirect: bool,

    /// ACME directory URL (e.g. Let's Encrypt's); enables automatic
    /// certificates for route hosts under `--acme-domains`. Needs
    /// `--tls-addr`, `--acme-domains` and `--acme-agree-tos`.
    #[arg(long, env = "ROUTER_ACME_DIRECTORY")]
    pub acme_directory: Option<String>,

    /// Contact e-mail registered with the ACME account.
    #[arg(long, env = "ROUTER_ACME_EMAIL")]
    pub acme_email: Option<String>,

    /// Agree to the ACME server's terms of service (required with `--acme-directory`).
    #[arg(long, env = "ROUTER_ACME_AGREE_TOS")]
    pub acme_agree_tos: bool,

    /// PEM root certificate trusted for the ACME directory's own TLS (a
    /// private or test CA).
    #[arg(long, env = "ROUTER_ACME_CA_ROOT")]
    pub acme_ca_root: Option<PathBuf>,

    /// Consul KV prefix holding the shared ACME state.
    #[arg(long, env = "ROUTER_ACME_KV_PREFIX", default_value = "router/acme",
          value_parser = |s: &str| router::acme::layout::Layout::new(s))]
    pub acme_kv_prefix: router::acme::layout::Layout,

    /// Renew a certificate this long before it expires (a certificate
    /// living no longer than this is renewed in its last third).
    #[arg(long, env = "ROUTER_ACME_RENEW_BEFORE", default_value = "30days", value_parser = ACME_RENEW_BEFORE)]
    pub acme_renew_before: Duration,

    /// Names certificates may be ordered for: `example.org` or
    /// `*.example.com` (one label), comma-separated.
    #[arg(long, env = "ROUTER_ACME_DOMAINS", value_parser = |s: &str| router::acme::domains::DomainPatterns::parse(s))]
    pub acme_domains: Option<router::acme::domains::DomainPatterns>,

    /// The challenge this node asks the ACME server to validate.
    #[arg(long, env = "ROUTER_ACME_CHALLENGE", value_enum, default_value = "http-01")]
    pub acme_challenge: AcmeChallenge,

    /// First wait after a failed order; doubles per consecutive failure.
    #[arg(long, env = "ROUTER_ACME_RETRY_MIN", default_value = "1m", value_parser = ACME_RETRY)]
    pub acme_retry_min: Duration,

    /// Longest wait between failed orders (the CA's `Retry-After` may ask for longer).
    #[arg(long, env = "ROUTER_ACME_RETRY_MAX", default_value = "6h", value_parser = ACME_RETRY)]
    pub acme_retry_max: Duration,
}

fn header_name(s: &str) -> Result<String, String> {
    http::HeaderName::from_bytes(s.as_bytes()).map(|_| s.to_string()).map_err(|_| format!("'{s}' is not a header name"))
}
