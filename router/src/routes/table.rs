//! The routing table: built whole from a snapshot of healthy instances plus the
//! overrides, then never changed (the proxy swaps in a new one), so lookups
//! need no lock and every request sees one consistent table.
//!
//! Lookup never scans the table. Routes are sorted by host, then by path
//! descending, so each host's routes are one contiguous run in which the first
//! path that is a prefix of the request path is the longest one. The order in
//! which hosts are tried is fabio's (docs/router.md, "Tag grammar"): every
//! route host matching the request host (exact, with the port rules, or as a
//! glob), most specific first (fabio's order of the reversed host strings,
//! ranked once when the table is built), then the host-less routes; the first
//! of these with a matching path prefix wins. Exact hosts are found with one
//! hash lookup (two when some route host carries `:80`/`:443`); glob patterns
//! are found by the literal text after their last `*`, one hash lookup per
//! distinct length of that text, so only patterns that can match are tried.

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use http::Uri;
use serde::{Serialize, Serializer};

use super::Instance;
use super::options::RouteOptions;
use super::outlier::TargetHealth;
use super::overrides::{self, Command, Del};
use super::pick::Picker;
use super::pick::Strategy;
use super::stats::RouteStats;
use super::tag::{self, Source};
use super::tcp::{self, PortRanges, TcpRoute};
use super::vars::Vars;

/// One backend a route can send a request to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Target {
    pub service: String,
    /// The Consul service ID, or the DST of an override line.
    pub instance_id: String,
    /// `scheme://address:port/`; the scheme follows `proto=`.
    #[serde(serialize_with = "display")]
    pub url: Uri,
    /// Share of the route's traffic, 0 to 1; the route's targets sum to 1
    /// (or all are 0, and the route serves nothing).
    pub weight: f64,
    /// The instance's Consul tags, or an override's `tags "..."`.
    pub tags: Vec<String>,
    /// The socket address for a plain-HTTP target whose host is an IP
    /// address (the usual Consul registration): the proxy's fast path
    /// connects to it without a resolver. None for https or a host name.
    #[serde(skip)]
    pub addr: Option<SocketAddr>,
    /// The URL's own path is `/`: nothing to put before the request path
    /// (known without reading the URL, a cache miss per request in a large
    /// table).
    #[serde(skip)]
    pub root_path: bool,
    /// The options of the tag or override line that made this target:
    /// `strip=`, `prepend=`, `proto=`, `tlsskipverify=` and `host=` apply
    /// per target (fabio). Shared between targets with equal options.
    #[serde(skip)]
    pub opts: Arc<RouteOptions>,
}

/// The address of `url` when it is `http://IP:port/...`.
pub fn plain_http_addr(url: &Uri) -> Option<SocketAddr> {
    if url.scheme_str() != Some("http") {
        return None;
    }
    ip_addr(url)
}

/// The address of `url` when its host is an IP address.
fn ip_addr(url: &Uri) -> Option<SocketAddr> {
    let auth = url.authority()?;
    let ip: IpAddr = auth.host().trim_start_matches('[').trim_end_matches(']').parse().ok()?;
    Some(SocketAddr::new(ip, auth.port_u16().unwrap_or(80)))
}

/// Requests for one host and path prefix, and where they go.
///
/// `repr(C)` keeps the fields a request reads first, together at the front
/// (with 10,000 routes every cache line a request touches is likely a miss).
#[derive(Debug, Serialize)]
#[repr(C)]
pub struct Route {
    /// What the proxy's fast path reads instead of the options and targets.
    #[serde(skip)]
    pub fast: FastFacts,
    /// `path` is `/`: it matches every request path without reading the
    /// route's path from the heap.
    #[serde(skip)]
    path_root: bool,
    /// Request counters, kept across table rebuilds while the route's host,
    /// path and services stay the same.
    #[serde(skip)]
    pub stats: Arc<RouteStats>,
    #[serde(skip)]
    picker: Picker,
    pub targets: Vec<Target>,
    /// Passive health of each target, by index in `targets`; carried across
    /// rebuilds like `stats`, per target that stays in the table.
    #[serde(skip)]
    pub health: Box<[Arc<TargetHealth>]>,
    /// Lower-cased; `""` for any host; `*.example.com` for a wildcard.
    pub host: String,
    pub path: String,
    /// The services behind the route, sorted, comma-separated (usually one).
    pub service: String,
    /// The first contributor's options. Of these the route uses only what
    /// is the same for all its targets (`redirect=`, `allow=`, `deny=`); the
    /// rest is each target's own ([`Target::opts`]).
    pub opts: Arc<RouteOptions>,
}

/// Facts about a route, worked out when the table is built, that let the
/// proxy's fast path serve the usual route without reading its options or
/// its targets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FastFacts {
    /// Every target is `http://IP:port` and there is no redirect.
    pub plain: bool,
    /// No option changes the request or limits clients: no `strip=`,
    /// `prepend=`, `host=` on any target, no `allow=` or `deny=`.
    pub untouched: bool,
    /// The only target, when there is exactly one: its address and whether
    /// its URL path is the root.
    pub single: Option<(SocketAddr, bool)>,
    /// The route answers with a redirect (`redirect=`): the lookup reads
    /// its options only then.
    pub redirect: bool,
}

impl FastFacts {
    fn of(targets: &[Target], opts: &RouteOptions) -> FastFacts {
        let plain = opts.redirect.is_none()
            && !targets.is_empty()
            && targets.iter().all(|t| t.addr.is_some() && !t.opts.proto.http2());
        let untouched = !opts.restricts() && targets.iter().all(|t| t.opts.untouched());
        let single = match targets {
            [t] => t.addr.map(|a| (a, t.root_path)),
            _ => None,
        };
        FastFacts { plain, untouched, single, redirect: opts.redirect.is_some() }
    }
}

impl Route {
    /// Picks a target by strategy and weights, skipping indices in `exclude`
    /// (targets that already failed for this request, for the retry) and
    /// targets ejected by passive health, unless every target left is
    /// ejected: then one of those is tried anyway. Lock-free for healthy
    /// targets (one atomic counter, one flag); None when every target is
    /// excluded or has weight 0.
    pub fn pick(&self, strategy: Strategy, exclude: &[usize]) -> Option<(usize, &Target)> {
        let first = self.picker.pick(strategy, exclude)?;
        let mut now = None;
        let mut ejected =
            |i: usize| self.health.get(i).is_some_and(|h| h.ejected(|| *now.get_or_insert_with(Instant::now)));
        let chosen = if ejected(first) {
            // Rare: walk on past ejected targets, a bounded number of them.
            let mut skip: Vec<usize> = exclude.iter().copied().chain([first]).collect();
            let mut found = None;
            for _ in 0..MAX_EJECTED_SKIPS {
                let Some(i) = self.picker.pick(strategy, &skip) else { break };
                if !ejected(i) {
                    found = Some(i);
                    break;
                }
                skip.push(i);
            }
            found.unwrap_or(first)
        } else {
            first
        };
        self.targets.get(chosen).map(|t| (chosen, t))
    }
}

/// Ejected targets one pick walks past before trying an ejected one.
const MAX_EJECTED_SKIPS: usize = 32;

/// Something in the input that was skipped, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// `service web tag 'urlprefix-...'`, `overrides line 3` or `route host/path`.
    pub source: String,
    pub message: String,
}

/// One host's routes in [`Table::routes`] and the host's place in the order
/// hosts are tried (lower first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    start: u32,
    end: u32,
    rank: u32,
    /// Some glob matching the requests that reach this (exact) host ranks
    /// before it, for plain HTTP and for TLS: only when false may a lookup
    /// that finds the host take its route without looking at the globs.
    outranked: [bool; 2],
}

impl Run {
    fn range(self) -> Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// Route host as written -> its run of routes. Hashed with foldhash
/// rather than SipHash: a lookup hashes the request's Host on every request,
/// and the keys come from Consul, not from clients, so flooding one bucket
/// is not something a client can do.
type HostMap = HashMap<HostKey, Run, foldhash::fast::RandomState>;

/// A glob pattern (port-normalised) and its host's run.
type Pattern = (Box<str>, Run);

/// The glob patterns for one kind of request (plain HTTP or TLS, which
/// drop a different default port from patterns and hosts alike).
#[derive(Debug, Default)]
struct Globs {
    /// The literal text after a pattern's last `*` -> the patterns ending so
    /// (port-normalised) with their runs.
    by_tail: HashMap<Box<str>, Vec<Pattern>, foldhash::fast::RandomState>,
    /// The distinct lengths of those tails, longest first.
    tail_lens: Vec<usize>,
}

impl Globs {
    fn add(&mut self, pattern: &str, run: Run) {
        let tail = &pattern[pattern.rfind('*').map_or(0, |i| i + 1)..];
        if !self.tail_lens.contains(&tail.len()) {
            self.tail_lens.push(tail.len());
            self.tail_lens.sort_unstable_by(|a, b| b.cmp(a));
        }
        self.by_tail.entry(tail.into()).or_default().push((pattern.into(), run));
    }

    /// Adds the runs of the patterns matching `host` to `found`.
    fn matching(&self, host: &str, found: &mut Candidates) {
        for &len in &self.tail_lens {
            let Some(at) = host.len().checked_sub(len) else { continue };
            if !host.is_char_boundary(at) {
                continue;
            }
            let Some(patterns) = self.by_tail.get(&host[at..]) else { continue };
            for (pattern, run) in patterns {
                if glob_match(pattern.as_bytes(), host.as_bytes()) {
                    found.push(*run);
                }
            }
        }
    }
}

/// `*` matches any run of characters (dots included, empty included);
/// everything else matches itself.
fn glob_match(pattern: &[u8], s: &[u8]) -> bool {
    let (mut p, mut i) = (0, 0);
    let mut back: Option<(usize, usize)> = None;
    while i < s.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            back = Some((p, i));
            p += 1;
        } else if p < pattern.len() && pattern[p] == s[i] {
            p += 1;
            i += 1;
        } else if let Some((bp, bi)) = back {
            p = bp + 1;
            i = bi + 1;
            back = Some((bp, bi + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// The runs of the hosts matching a request, collected without allocating
/// for up to eight (more than any real table gives one request).
#[derive(Default)]
struct Candidates {
    inline: [Option<Run>; 8],
    len: usize,
    more: Vec<Run>,
}

impl Candidates {
    fn push(&mut self, run: Run) {
        if self.iter().any(|r| r.rank == run.rank) {
            return;
        }
        match self.inline.get_mut(self.len) {
            Some(slot) => *slot = Some(run),
            None => self.more.push(run),
        }
        self.len += 1;
    }

    fn iter(&self) -> impl Iterator<Item = Run> + '_ {
        self.inline.iter().flatten().copied().chain(self.more.iter().copied())
    }

    /// Puts the runs in order, most specific host first; allocates only
    /// for more than eight.
    fn sort(&mut self) {
        if self.more.is_empty() {
            self.inline[..self.len].sort_unstable_by_key(|r| r.map(|r| r.rank));
        } else {
            let mut all: Vec<Run> = self.iter().collect();
            all.sort_unstable_by_key(|r| r.rank);
            self.inline = [None; 8];
            self.more = all;
        }
    }
}

/// fabio's order of route hosts, most specific first: descending by the
/// host reversed character by character, its `:port` kept at the end
/// (`*.a.foo.com` before `*.foo.com`, `foo.com:80` before `foo.com`).
fn specificity_key(host: &str) -> String {
    let (name, port) = match tag::split_port(host) {
        Some((name, Some(port))) => (name.trim_start_matches('[').trim_end_matches(']'), Some(port)),
        _ => (host, None),
    };
    let reversed: String = name.chars().rev().collect();
    match port {
        Some(port) if reversed.contains(':') => format!("[{reversed}]:{port}"),
        Some(port) => format!("{reversed}:{port}"),
        None => reversed,
    }
}

/// A host with the default port of the request's scheme dropped (`:80` for
/// plain HTTP, `:443` for TLS), as fabio normalises both request hosts and
/// route hosts; any other port stays part of the host.
fn drop_default_port(host: &str, tls: bool) -> &str {
    host.strip_suffix(if tls { ":443" } else { ":80" }).unwrap_or(host)
}

/// Longest host kept inside a [`HostKey`].
const INLINE_HOST: usize = 30;

/// A host as a map key, kept inside the map's slot when it is short (most
/// are), so that comparing it during a lookup reads no other memory: with
/// 10,000 hosts every such read is a cache miss.
#[derive(Debug, Clone)]
enum HostKey {
    Inline { len: u8, bytes: [u8; INLINE_HOST] },
    Heap(Box<str>),
}

impl HostKey {
    fn as_str(&self) -> &str {
        match self {
            // Built from a &str, cut at its length: always UTF-8.
            HostKey::Inline { len, bytes } => std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default(),
            HostKey::Heap(s) => s,
        }
    }
}

impl From<&str> for HostKey {
    fn from(s: &str) -> Self {
        match u8::try_from(s.len()) {
            Ok(len) if s.len() <= INLINE_HOST => {
                let mut bytes = [0; INLINE_HOST];
                bytes[..s.len()].copy_from_slice(s.as_bytes());
                HostKey::Inline { len, bytes }
            }
            _ => HostKey::Heap(s.into()),
        }
    }
}

// Hashed and compared as the str it holds, as `Borrow<str>` requires.
impl std::hash::Hash for HostKey {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.as_str().hash(h)
    }
}

impl PartialEq for HostKey {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for HostKey {}

impl std::borrow::Borrow<str> for HostKey {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

/// The immutable routing table.
#[derive(Debug, Default)]
pub struct Table {
    /// Sorted by host, then path descending.
    routes: Vec<Route>,
    /// Every route host, as written -> its run in `routes`.
    hosts: HostMap,
    /// Some route host ends in `:80` (`:443`): a plain (TLS) request for
    /// `h` also tries the route host `h:80` (`h:443`).
    port80: bool,
    port443: bool,
    /// The glob patterns, for plain-HTTP requests and for TLS requests.
    globs: [Globs; 2],
    /// The host-less routes' run.
    any: Range<usize>,
    /// TCP routes, by port.
    tcp: Vec<TcpRoute>,
    /// TLS passthrough routes (a host source with `proto=tcp`), most
    /// specific host first: a route's index is its rank.
    passthrough: Vec<TcpRoute>,
    /// Their exact hosts, and their glob patterns (as for TLS requests),
    /// each run one route long.
    pass_hosts: HostMap,
    pass_globs: Globs,
}

impl Table {
    /// Builds from instances (any order) + the overrides text (KV value, may
    /// be empty). Never fails: bad tags and bad override lines become Problems
    /// and are skipped; everything else still applies.
    pub fn build(instances: &[Instance], overrides: &str, tag_prefix: &str) -> (Table, Vec<Problem>) {
        Table::build_with_vars(instances, overrides, tag_prefix, &Vars::default())
    }

    /// [`Table::build`] with the values of the tags' `$VARIABLES`.
    pub fn build_with_vars(
        instances: &[Instance],
        overrides: &str,
        tag_prefix: &str,
        vars: &Vars,
    ) -> (Table, Vec<Problem>) {
        let mut b = Builder::default();
        let mut order: Vec<&Instance> = instances.iter().collect();
        order.sort_by(|a, c| (&a.service, &a.id).cmp(&(&c.service, &c.id)));
        for inst in order {
            b.add_instance(inst, tag_prefix, vars);
        }
        for (line, cmd) in overrides::parse(overrides) {
            match cmd {
                Ok(cmd) => b.apply(cmd, Origin::Line(line)),
                Err(message) => b.problem(Origin::Line(line), message),
            }
        }
        b.finish()
    }

    pub fn empty() -> Table {
        Table::default()
    }

    /// Gives every route that `old` also has (same host, path and services)
    /// the old route's counters, so a rebuild does not reset them, and each
    /// of its targets that was in the old route (same instance and URL) its
    /// passive-health state. Cost: one hash lookup per route.
    pub fn keep_stats(&mut self, old: &Table) {
        for r in &mut self.routes {
            let run = match r.host.as_str() {
                "" => Some(old.any.clone()),
                host => old.hosts.get(host).map(|run| run.range()),
            };
            let prev = run.and_then(|run| old.routes[run].iter().find(|o| o.path == r.path && o.service == r.service));
            if let Some(prev) = prev {
                r.stats = prev.stats.clone();
                for (t, h) in r.targets.iter().zip(r.health.iter_mut()) {
                    let same = |o: &(&Target, &Arc<TargetHealth>)| o.0.instance_id == t.instance_id && o.0.url == t.url;
                    if let Some((_, old)) = prev.targets.iter().zip(prev.health.iter()).find(same) {
                        *h = old.clone();
                    }
                }
            }
        }
        for r in &mut self.tcp {
            if let Some(prev) = old.tcp_route(r.port).filter(|o| o.service == r.service) {
                r.stats = prev.stats.clone();
            }
        }
        if !old.passthrough.is_empty() {
            let by_source: HashMap<&str, &TcpRoute> = old.passthrough.iter().map(|r| (r.source.as_str(), r)).collect();
            for r in &mut self.passthrough {
                if let Some(prev) = by_source.get(r.source.as_str()).filter(|o| o.service == r.service) {
                    r.stats = prev.stats.clone();
                }
            }
        }
    }

    /// The TLS passthrough routes, most specific host first.
    pub fn passthrough_routes(&self) -> &[TcpRoute] {
        &self.passthrough
    }

    /// The passthrough route for a ClientHello's server name (lower-case,
    /// no trailing dot, no port), if the connection is to be passed
    /// through: the most specific passthrough host matching it (exact or
    /// glob, fabio's order), unless an HTTP route host matching the name
    /// comes before it in that order (then the name is terminated and
    /// served by that route). Costs nothing while there is no passthrough
    /// route.
    pub fn passthrough(&self, sni: &str) -> Option<&TcpRoute> {
        if self.passthrough.is_empty() {
            return None;
        }
        let mut found = Candidates::default();
        if let Some(run) = self.pass_hosts.get(sni) {
            found.push(*run);
        }
        self.pass_globs.matching(sni, &mut found);
        let best = found.iter().min_by_key(|r| r.rank)?;
        let route = self.passthrough.get(best.start as usize)?;
        let mut http = Candidates::default();
        if let Some(run) = self.hosts.get(sni) {
            http.push(*run);
        }
        if self.port443 {
            let with_port = format!("{sni}:443");
            if let Some(run) = self.hosts.get(with_port.as_str()) {
                http.push(*run);
            }
        }
        self.globs[1].matching(sni, &mut http);
        let mine = specificity_key(&route.source);
        let before = http.iter().any(|run| specificity_key(&self.routes[run.start as usize].host) > mine);
        (!before).then_some(route)
    }

    /// The TCP routes, by port.
    pub fn tcp_routes(&self) -> &[TcpRoute] {
        &self.tcp
    }

    /// The TCP route on `port`.
    pub fn tcp_route(&self, port: u16) -> Option<&TcpRoute> {
        self.tcp.binary_search_by_key(&port, |r| r.port).ok().map(|i| &self.tcp[i])
    }

    /// Drops the TCP routes whose port is outside `allowed` (`--tcp-ports`),
    /// one problem each: a tag must not make the edge listen on any port.
    pub fn restrict_tcp(&mut self, allowed: &PortRanges) -> Vec<Problem> {
        let mut problems = Vec::new();
        self.tcp.retain(|r| {
            let ok = allowed.contains(r.port);
            if !ok {
                problems.push(Problem {
                    source: format!("route {}", r.source),
                    message: format!("port {} is outside --tcp-ports ({allowed}); not opened", r.port),
                });
            }
            ok
        });
        problems
    }

    /// The route for a request. `host`: the raw Host header value (any case,
    /// may carry `:port`); `path`: the request path without the query;
    /// `tls`: the request came over TLS (`:443` is its default port).
    pub fn lookup(&self, host: &str, path: &str, tls: bool) -> Option<&Route> {
        self.lookup_by(host, path, tls, |_| true)
    }

    /// The first route, in lookup order, that `accept` takes: each host
    /// matching the request, most specific first, offers its longest
    /// matching path, then the host-less routes do. The proxy uses it to
    /// skip a redirect that would point at the request itself.
    pub fn lookup_by(
        &self,
        host: &str,
        path: &str,
        tls: bool,
        mut accept: impl FnMut(&Route) -> bool,
    ) -> Option<&Route> {
        let mut buf = [0u8; 256];
        let host = normalize_host(host, &mut buf);
        let host = drop_default_port(&host, tls);
        // An empty Host is matched too: the glob `*` (or `*:80`) takes it.
        {
            let mut found = Candidates::default();
            if let Some(run) = self.hosts.get(host) {
                found.push(*run);
            }
            if (tls && self.port443) || (!tls && self.port80) {
                let mut with_port = [0u8; 262];
                let port: &[u8] = if tls { b":443" } else { b":80" };
                if let Some(dst) = with_port.get_mut(..host.len() + port.len()) {
                    dst[..host.len()].copy_from_slice(host.as_bytes());
                    dst[host.len()..].copy_from_slice(port);
                    if let Some(run) = std::str::from_utf8(dst).ok().and_then(|h| self.hosts.get(h)) {
                        found.push(*run);
                    }
                }
            }
            // The usual request: its host's own routes, and no glob before them.
            if let (1, Some(run)) = (found.len, found.inline[0])
                && !run.outranked[usize::from(tls)]
                && let Some(r) = self.longest_prefix(&run.range(), path).filter(|r| accept(r))
            {
                return Some(r);
            }
            self.globs[usize::from(tls)].matching(host, &mut found);
            let best_first = match found.len {
                0 => None,
                1 => found.inline[0],
                _ => {
                    found.sort();
                    for run in found.iter() {
                        if let Some(r) = self.longest_prefix(&run.range(), path).filter(|r| accept(r)) {
                            return Some(r);
                        }
                    }
                    None
                }
            };
            if let Some(r) = best_first.and_then(|run| self.longest_prefix(&run.range(), path)).filter(|r| accept(r)) {
                return Some(r);
            }
        }
        self.longest_prefix(&self.any, path).filter(|r| accept(r))
    }

    /// Every route, sorted by host, then path descending (for the API and UI).
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    fn longest_prefix(&self, run: &Range<usize>, path: &str) -> Option<&Route> {
        self.routes[run.clone()]
            .iter()
            .find(|r| (r.path_root && path.starts_with('/')) || path.starts_with(r.path.as_str()))
    }
}

/// The request host as routes see it: lower-cased, the scheme's default
/// port dropped (`:80` plain, `:443` TLS), any other port kept.
pub fn request_host(raw: &str, tls: bool) -> String {
    let mut buf = [0u8; 256];
    drop_default_port(&normalize_host(raw, &mut buf), tls).to_string()
}

/// Lower-cases the host and drops a trailing dot of its name (`a.com.:81`
/// is `a.com:81`), without allocating for any host a DNS name can be (up to
/// 255 bytes).
fn normalize_host<'a>(raw: &'a str, buf: &'a mut [u8; 256]) -> Cow<'a, str> {
    let host: Cow<'a, str> = match raw.rfind(':') {
        Some(colon) if raw[..colon].ends_with('.') && !raw.starts_with('[') => {
            Cow::Owned(format!("{}{}", &raw[..colon - 1], &raw[colon..]))
        }
        _ => Cow::Borrowed(raw.strip_suffix('.').unwrap_or(raw)),
    };
    let Cow::Borrowed(host) = host else {
        return Cow::Owned(host.to_ascii_lowercase());
    };
    if !host.bytes().any(|b| b.is_ascii_uppercase()) {
        return Cow::Borrowed(host);
    }
    match buf.get_mut(..host.len()) {
        Some(dst) => {
            for (d, s) in dst.iter_mut().zip(host.bytes()) {
                *d = s.to_ascii_lowercase();
            }
            // ASCII lower-casing keeps UTF-8 valid; the fallback is unreachable.
            match std::str::from_utf8(dst) {
                Ok(s) => Cow::Borrowed(s),
                Err(_) => Cow::Owned(host.to_ascii_lowercase()),
            }
        }
        None => Cow::Owned(host.to_ascii_lowercase()),
    }
}

fn display<S: Serializer>(uri: &Uri, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(uri)
}

/// Where a route or target came from, formatted only when a Problem needs it.
#[derive(Debug, Clone, Copy)]
enum Origin<'a> {
    Tag { service: &'a str, tag: &'a str },
    Line(usize),
}

impl fmt::Display for Origin<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Tag { service, tag } => write!(f, "service {service} tag '{tag}'"),
            Origin::Line(n) => write!(f, "overrides line {n}"),
        }
    }
}

/// Orders the routes as the table keeps them (host ascending, path
/// descending), so assembly needs no final sort.
type Key = (String, Reverse<String>);

/// A target while the table is being assembled.
#[derive(Debug)]
struct Pending {
    service: String,
    instance_id: String,
    url: Uri,
    tags: Vec<String>,
    /// Index into `Builder::groups`: targets sharing an explicit weight.
    group: Option<usize>,
    opts: Arc<RouteOptions>,
}

#[derive(Debug, Default)]
struct PendingRoute<'a> {
    /// The first contributor's options, and who that was.
    opts: Option<(Arc<RouteOptions>, Origin<'a>)>,
    targets: Vec<Pending>,
}

#[derive(Debug, Default)]
struct Builder<'a> {
    routes: BTreeMap<Key, PendingRoute<'a>>,
    /// Explicit weights: the share of a route's traffic for all the targets
    /// in the group together.
    groups: Vec<f64>,
    /// A tag's `weight=` is shared by every instance of the service carrying
    /// the same tag, so a service's share does not grow with its instances.
    tag_groups: HashMap<(Source, String, String), usize>,
    problems: Vec<Problem>,
    /// The options last given to a target, shared with the next target whose
    /// options are equal (the instances of a service usually are).
    last_opts: Option<Arc<RouteOptions>>,
}

impl<'a> Builder<'a> {
    fn problem(&mut self, origin: Origin<'_>, message: String) {
        self.problems.push(Problem { source: origin.to_string(), message });
    }

    /// One Arc per distinct run of equal options.
    fn share(&mut self, opts: RouteOptions) -> Arc<RouteOptions> {
        match &self.last_opts {
            Some(last) if **last == opts => last.clone(),
            _ => self.last_opts.insert(Arc::new(opts)).clone(),
        }
    }

    fn add_instance(&mut self, inst: &'a Instance, prefix: &str, vars: &Vars) {
        for t in &inst.tags {
            let Some(parsed) = tag::parse(t, prefix, vars) else { continue };
            let origin = Origin::Tag { service: &inst.service, tag: t };
            let added = parsed.and_then(|r| {
                for why in &r.parsed.ignored {
                    self.problem(origin, why.clone());
                }
                let url = target_url(r.parsed.opts.proto.scheme(), &inst.address, inst.port)?;
                let group = r.parsed.weight.map(|w| {
                    let key = (r.source.clone(), inst.service.clone(), t.clone());
                    *self.tag_groups.entry(key).or_insert_with(|| {
                        self.groups.push(w);
                        self.groups.len() - 1
                    })
                });
                let opts = self.share(r.parsed.opts);
                let target = Pending {
                    service: inst.service.clone(),
                    instance_id: inst.id.clone(),
                    url,
                    tags: inst.tags.clone(),
                    group,
                    opts,
                };
                self.add(r.source, target, origin)
            });
            if let Err(message) = added {
                self.problem(origin, message);
            }
        }
    }

    fn add(&mut self, source: Source, target: Pending, origin: Origin<'a>) -> Result<(), String> {
        let tcp_source = source.host.starts_with(':');
        let tcp_target = target.url.scheme_str() == Some("tcp");
        if tcp_source && !tcp_target {
            return Err("a :PORT source is a TCP route: it needs proto=tcp (or a tcp:// DST)".to_string());
        }
        if tcp_target && !tcp_source {
            passthrough_source(&source)?;
        }
        let route = self.routes.entry((source.host, Reverse(source.path))).or_default();
        if let Some(first) = route.targets.first()
            && (first.url.scheme_str() == Some("tcp")) != tcp_target
        {
            return Err(if tcp_target {
                "the route's other targets are HTTP, not TLS passthrough; ignored".to_string()
            } else {
                "the route's other targets are TLS passthrough (proto=tcp), not HTTP; ignored".to_string()
            });
        }
        let same = |p: &Pending| p.service == target.service && p.instance_id == target.instance_id;
        if route.targets.iter().any(same) {
            return Err("the same instance is already a target of this route; ignored".to_string());
        }
        match &route.opts {
            None => route.opts = Some((target.opts.clone(), origin)),
            Some((first, by)) if !first.same_route_options(&target.opts) => self.problems.push(Problem {
                source: origin.to_string(),
                message: format!(
                    "redirect=, allow= or deny= differ from the route's, which come from {by}; the route keeps those"
                ),
            }),
            Some(_) => {}
        }
        route.targets.push(target);
        Ok(())
    }

    fn apply(&mut self, cmd: Command, origin: Origin<'a>) {
        match cmd {
            Command::Add { service, source, dst, tags, parsed } => {
                for why in &parsed.ignored {
                    self.problem(origin, why.clone());
                }
                let group = parsed.weight.map(|w| {
                    self.groups.push(w);
                    self.groups.len() - 1
                });
                let opts = self.share(parsed.opts);
                let target = Pending { service, instance_id: dst.to_string(), url: dst, tags, group, opts };
                if let Err(message) = self.add(source, target, origin) {
                    self.problem(origin, message);
                }
            }
            Command::Del(del) => self.delete(&del),
            Command::Weight { service, source, weight, tags } => {
                let Some(route) = self.routes.get_mut(&(source.host, Reverse(source.path))) else { return };
                let g = self.groups.len();
                let mut any = false;
                for t in route.targets.iter_mut().filter(|t| matches(t, service.as_deref(), &tags)) {
                    t.group = Some(g);
                    any = true;
                }
                if any {
                    self.groups.push(weight);
                }
            }
        }
    }

    fn delete(&mut self, del: &Del) {
        let on = |(host, Reverse(path)): &Key, src: &Source| *host == src.host && *path == src.path;
        let doomed = |key: &Key, t: &Pending| match del {
            Del::Service(s) => t.service == *s,
            Del::Route { service, source } => on(key, source) && t.service == *service,
            Del::Target { service, source, dst } => on(key, source) && t.service == *service && same_url(&t.url, dst),
            Del::Tags { service, tags } => matches(t, service.as_deref(), tags),
        };
        for (key, route) in &mut self.routes {
            route.targets.retain(|t| !doomed(key, t));
        }
        // An emptied route is gone, options included: a later `route add`
        // starts it afresh.
        self.routes.retain(|_, r| !r.targets.is_empty());
    }

    fn finish(mut self) -> (Table, Vec<Problem>) {
        let mut routes: Vec<Route> = Vec::with_capacity(self.routes.len());
        let mut tcp_routes: Vec<TcpRoute> = Vec::new();
        let mut passthrough: Vec<TcpRoute> = Vec::new();
        for ((host, Reverse(path)), pending) in std::mem::take(&mut self.routes) {
            let weights = weigh(&pending.targets, &self.groups);
            // Routes are homogeneous (see `add`): the first target tells.
            let pass = tcp::port_of(&host).is_none()
                && pending.targets.first().is_some_and(|t| t.url.scheme_str() == Some("tcp"));
            if weights.iter().all(|&w| w == 0.0) {
                self.problems.push(Problem {
                    source: format!("route {host}{path}"),
                    message: if tcp::port_of(&host).is_some() || pass {
                        "every target has weight 0; connections to it are closed".to_string()
                    } else {
                        "every target has weight 0; requests for it get 502".to_string()
                    },
                });
            }
            let service = services(&pending.targets);
            let targets: Vec<Target> = pending
                .targets
                .into_iter()
                .zip(&weights)
                .map(|(p, &weight)| Target {
                    service: p.service,
                    instance_id: p.instance_id,
                    addr: if tcp::port_of(&host).is_some() || pass { ip_addr(&p.url) } else { plain_http_addr(&p.url) },
                    root_path: matches!(p.url.path(), "" | "/"),
                    url: p.url,
                    weight,
                    tags: p.tags,
                    opts: p.opts,
                })
                .collect();
            let opts = pending.opts.map(|(o, _)| o).unwrap_or_default();
            if let Some(port) = tcp::port_of(&host) {
                let picker = Picker::new(&weights);
                tcp_routes.push(TcpRoute { port, source: host, service, targets, picker, stats: Arc::default() });
                continue;
            }
            if pass {
                let picker = Picker::new(&weights);
                passthrough.push(TcpRoute { port: 0, source: host, service, targets, picker, stats: Arc::default() });
                continue;
            }
            routes.push(Route {
                fast: FastFacts::of(&targets, &opts),
                host,
                path_root: path == "/",
                path,
                service,
                targets,
                opts,
                picker: Picker::new(&weights),
                health: weights.iter().map(|_| Arc::default()).collect(),
                stats: Arc::default(),
            });
        }
        debug_assert!(routes.is_sorted_by(|a, b| (&a.host, Reverse(&a.path)) <= (&b.host, Reverse(&b.path))));

        tcp_routes.sort_by_key(|r| r.port);
        passthrough.sort_by_cached_key(|r| Reverse(specificity_key(&r.source)));
        let (mut pass_hosts, mut pass_globs) = (HostMap::default(), Globs::default());
        for (i, r) in passthrough.iter().enumerate() {
            let run = Run { start: i as u32, end: i as u32 + 1, rank: i as u32, outranked: [true; 2] };
            if r.source.contains('*') {
                pass_globs.add(&r.source, run);
            } else {
                pass_hosts.insert(r.source.as_str().into(), run);
            }
        }
        let mut table = Table { routes, tcp: tcp_routes, passthrough, pass_hosts, pass_globs, ..Table::default() };
        let mut runs: Vec<(&str, Range<usize>)> = Vec::new();
        let mut start = 0;
        while start < table.routes.len() {
            let host = table.routes[start].host.as_str();
            let end = start + table.routes[start..].iter().take_while(|r| r.host == host).count();
            match host {
                "" => table.any = start..end,
                host => runs.push((host, start..end)),
            }
            start = end;
        }
        // Ranks: fabio's order of the hosts, worked out once.
        let mut by_specificity: Vec<(String, usize)> =
            runs.iter().enumerate().map(|(i, (host, _))| (specificity_key(host), i)).collect();
        by_specificity.sort_unstable_by(|a, b| b.cmp(a));
        let mut rank = vec![0u32; runs.len()];
        for (r, (_, i)) in by_specificity.iter().enumerate() {
            rank[*i] = r as u32;
        }
        let (mut hosts, mut globs) = (HostMap::default(), [Globs::default(), Globs::default()]);
        let (mut port80, mut port443) = (false, false);
        for ((host, range), rank) in runs.into_iter().zip(rank) {
            let run = Run { start: range.start as u32, end: range.end as u32, rank, outranked: [true; 2] };
            port80 |= host.ends_with(":80");
            port443 |= host.ends_with(":443");
            if host.contains('*') {
                globs[0].add(drop_default_port(host, false), run);
                globs[1].add(drop_default_port(host, true), run);
            } else {
                hosts.insert(host.into(), run);
            }
        }
        // Which exact hosts a glob may come before (one index probe per
        // host and scheme, as a request would make).
        for (key, run) in hosts.iter_mut() {
            for tls in [false, true] {
                let mut found = Candidates::default();
                globs[usize::from(tls)].matching(drop_default_port(key.as_str(), tls), &mut found);
                run.outranked[usize::from(tls)] = found.iter().any(|g| g.rank < run.rank);
            }
        }
        // Patterns are in `hosts` too, for `keep_stats` (a request host
        // equal to a pattern also matches it as a glob: no change); they
        // stay `outranked`, so a lookup never takes them as exact.
        for g in &globs[0].by_tail {
            for (_, run) in g.1 {
                let host = table.routes[run.start as usize].host.as_str();
                hosts.insert(host.into(), *run);
            }
        }
        table.hosts = hosts;
        table.globs = globs;
        table.port80 = port80;
        table.port443 = port443;
        (table, self.problems)
    }
}

/// Checks the source of a TLS passthrough route (a host source with
/// `proto=tcp`): the connection is chosen by the ClientHello's server name
/// alone, which has neither a path nor a port, so a route that would need
/// either is refused rather than half applied.
fn passthrough_source(source: &Source) -> Result<(), String> {
    if source.host.is_empty() {
        return Err("a TLS passthrough route (proto=tcp on a host) needs a host: the SNI name chooses it".to_string());
    }
    if source.path != "/" {
        return Err(format!("a TLS passthrough route has no path (SNI carries none), not '{}'", source.path));
    }
    if !matches!(tag::split_port(&source.host), Some((_, None))) || source.host.starts_with('[') {
        return Err(format!(
            "a TLS passthrough route's host is a name or a name pattern without a port (SNI carries no port or address), not '{}'",
            source.host
        ));
    }
    Ok(())
}

/// The route's services, sorted and comma-separated.
fn services(targets: &[Pending]) -> String {
    let first = targets.first().map_or("", |t| t.service.as_str());
    if targets.iter().all(|t| t.service == first) {
        return first.to_string();
    }
    let mut names: Vec<&str> = targets.iter().map(|t| t.service.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    names.join(",")
}

/// Whether a target belongs to the service (any, when None) and carries all
/// the tags.
fn matches(t: &Pending, service: Option<&str>, tags: &[String]) -> bool {
    service.is_none_or(|s| t.service == s) && tags.iter().all(|tag| t.tags.contains(tag))
}

/// `http://h:1` and `http://H:1/` name the same target.
fn same_url(a: &Uri, b: &Uri) -> bool {
    let key = |u: &Uri| {
        (
            u.scheme_str().map(str::to_ascii_lowercase),
            u.authority().map(|a| a.as_str().to_ascii_lowercase()),
            u.path().to_string(),
        )
    };
    key(a) == key(b)
}

/// fabio's weights: each group of targets with an explicit weight gets that
/// share of the route in total, split evenly among its targets; the rest is
/// split evenly among the targets without one. Explicit shares summing over 1
/// are scaled down to 1; if every target has an explicit weight and they sum
/// under 1, they are scaled up to 1.
fn weigh(targets: &[Pending], groups: &[f64]) -> Vec<f64> {
    if targets.iter().all(|t| t.group.is_none()) {
        return vec![1.0 / targets.len() as f64; targets.len()];
    }
    let mut members: BTreeMap<usize, usize> = BTreeMap::new();
    for g in targets.iter().filter_map(|t| t.group) {
        *members.entry(g).or_default() += 1;
    }
    let fixed: f64 = members.keys().map(|&g| groups[g]).sum();
    let free = targets.iter().filter(|t| t.group.is_none()).count();
    let scale = if fixed > 1.0 || (free == 0 && fixed > 0.0) { 1.0 / fixed } else { 1.0 };
    let rest = if free > 0 { (1.0 - fixed * scale).max(0.0) / free as f64 } else { 0.0 };
    targets
        .iter()
        .map(|t| match t.group {
            Some(g) => groups[g] * scale / members[&g] as f64,
            None => rest,
        })
        .collect()
}

fn target_url(scheme: &str, address: &str, port: u16) -> Result<Uri, String> {
    let url = match address.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(v6)) => format!("{scheme}://[{v6}]:{port}/"),
        Ok(v4) => format!("{scheme}://{v4}:{port}/"),
        Err(_) if !address.is_empty() && address.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b)) => {
            format!("{scheme}://{address}:{port}/")
        }
        Err(_) => return Err(format!("instance address '{address}' is not an IP address or host name")),
    };
    // Handing over the String's buffer spares a copy per target.
    Uri::from_maybe_shared(bytes::Bytes::from(url)).map_err(|e| format!("target URL for '{address}': {e}"))
}

#[cfg(test)]
mod tests;
