//! The certificate stores (`--cert-source`) and how their contents become
//! the served set: each store hands its whole current contents to
//! [`Sources::publish`] when something changed; the set is rebuilt from
//! every store's last contents, in flag order, and swapped in.
//!
//! - `dir:PATH` is polled once a second: cheaper to get right than inotify
//!   (editors that rename, Kubernetes secret mounts that swap a symlink) and
//!   well inside the 2 s an operator may wait. Only names, sizes and
//!   modification times are read each second; the files only when those moved.
//! - `consul:PREFIX` follows the prefix with a blocking query (the same loop
//!   as the route watches), so every edge node serves the same certificates.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;

use super::cert::{self, Loaded};
use super::store::{Resolver, Store};
pub use crate::cli::CertSource as Source;
use crate::discovery::{self, Timing};
use crate::routes::Problem;

/// Every store's last contents, and where the built set goes.
pub struct Sources {
    names: Vec<String>,
    /// Per source, in flag order: what it loaded and what it skipped.
    last: Mutex<Vec<(Vec<Loaded>, Vec<Problem>)>>,
    default: Option<String>,
    resolver: Arc<Resolver>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl Sources {
    pub fn new(
        sources: &[Source],
        default: Option<String>,
        resolver: Arc<Resolver>,
        provider: Arc<rustls::crypto::CryptoProvider>,
    ) -> Arc<Self> {
        Arc::new(Sources {
            names: sources.iter().map(|s| s.to_string()).collect(),
            last: Mutex::new(vec![(Vec::new(), Vec::new()); sources.len()]),
            default,
            resolver,
            provider,
        })
    }

    /// Source `idx` now holds `entries` (name below the store -> contents):
    /// checks each certificate, then rebuilds and swaps in the whole set.
    /// On a blocking thread: a thousand certificates take a while to check,
    /// and that must not hold up a worker that serves requests.
    async fn publish(
        self: &Arc<Self>,
        idx: usize,
        entries: BTreeMap<String, Vec<u8>>,
        origin: impl Fn(&str) -> String + Send + 'static,
    ) {
        let this = self.clone();
        if let Err(error) = tokio::task::spawn_blocking(move || this.rebuild(idx, &entries, origin)).await {
            tracing::error!(source = %self.names[idx], %error, "reading a certificate store failed");
        }
    }

    fn rebuild(&self, idx: usize, entries: &BTreeMap<String, Vec<u8>>, origin: impl Fn(&str) -> String) {
        let started = std::time::Instant::now();
        let source = &self.names[idx];
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        let (bundles, skipped) = cert::bundles(entries, origin);
        let mut problems: Vec<Problem> = skipped
            .into_iter()
            .map(|s| Problem { source: format!("{source} {}", s.origin), message: s.message })
            .collect();
        let mut loaded = Vec::with_capacity(bundles.len());
        for b in &bundles {
            match cert::load(b, source, &self.provider, now) {
                Ok(l) => loaded.push(l),
                Err(message) => problems.push(Problem { source: format!("{source} {}", b.origin), message }),
            }
        }
        for p in &problems {
            tracing::warn!(source = %p.source, problem = %p.message, "certificate skipped");
        }
        let (count, skipped) = (loaded.len(), problems.len());
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        last[idx] = (loaded, problems);
        let all = last.iter().flat_map(|(l, _)| l.iter().cloned());
        let problems = last.iter().flat_map(|(_, p)| p.iter().cloned()).collect();
        let store = Store::build(all, self.default.as_deref(), problems);
        self.resolver.store.store(Arc::new(store));
        tracing::info!(source = %source, certificates = count, skipped, took = ?started.elapsed(), "certificate store read");
    }

    /// Starts following source `idx` under the process's supervisor: a
    /// watcher that ends is logged with its reason and started again after
    /// a pause that grows to 30 s while it keeps ending.
    pub fn spawn(
        self: &Arc<Self>,
        tasks: &mut kit::Supervisor,
        idx: usize,
        source: Source,
        consul: consul::Client,
        shared: Arc<discovery::Shared>,
        timing: Timing,
    ) {
        let name = self.names[idx].clone();
        let this = self.clone();
        let restart = kit::OnEnd::Restart(kit::Backoff::new(Duration::from_millis(500), Duration::from_secs(30)));
        tasks.spawn("certificate store", restart, move |mut stop| {
            let this = this.clone();
            let source = source.clone();
            let consul = consul.clone();
            let shared = shared.clone();
            let name = name.clone();
            async move {
                // Ends at once on stop: otherwise SIGTERM waits the whole
                // grace for a watcher that never looks at it.
                let follow = async {
                    match source {
                        Source::Dir(path) => this.follow_dir(idx, path).await,
                        Source::Consul(prefix) => this.follow_consul(idx, name, prefix, consul, shared, timing).await,
                    }
                };
                tokio::select! {
                    () = follow => {}
                    () = stop.stopped() => {}
                }
                Ok::<(), std::convert::Infallible>(())
            }
        });
    }

    async fn follow_dir(self: &Arc<Self>, idx: usize, path: PathBuf) {
        let mut seen: Option<BTreeMap<String, (SystemTime, u64)>> = None;
        let mut every = tokio::time::interval(DIR_POLL);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reported = None;
        loop {
            every.tick().await;
            let listed = match tokio::task::spawn_blocking({
                let path = path.clone();
                move || list_dir(&path)
            })
            .await
            {
                Ok(r) => r,
                Err(e) => Err(e.to_string()),
            };
            let stamps = match listed {
                Ok(s) => s,
                Err(error) => {
                    // An unreadable directory keeps the last set: a
                    // directory swapped by a deploy must not empty it.
                    if reported.as_ref() != Some(&error) {
                        tracing::warn!(dir = %path.display(), %error, "certificate directory unreadable; keeping the last set");
                        reported = Some(error);
                    }
                    continue;
                }
            };
            reported = None;
            if seen.as_ref() == Some(&stamps) {
                continue;
            }
            let entries = {
                let path = path.clone();
                let names: Vec<String> = stamps.keys().cloned().collect();
                tokio::task::spawn_blocking(move || read_files(&path, &names)).await.unwrap_or_default()
            };
            let dir = path.clone();
            self.publish(idx, entries, move |n| dir.join(n).display().to_string()).await;
            seen = Some(stamps);
        }
    }

    async fn follow_consul(
        self: &Arc<Self>,
        idx: usize,
        name: String,
        prefix: String,
        consul: consul::Client,
        shared: Arc<discovery::Shared>,
        timing: Timing,
    ) {
        // A one-slot channel: the watch loop blocks until the set is built.
        let (tx, mut rx) = mpsc::channel::<Vec<consul::KvPair>>(1);
        let read = {
            let prefix = prefix.clone();
            move |opts| {
                let consul = consul.clone();
                let prefix = prefix.clone();
                async move { consul.kv_list(&prefix, &opts).await }
            }
        };
        let watch = discovery::watch::run(name, timing, shared, tx, read, |pairs, _| pairs);
        let apply = async {
            while let Some(pairs) = rx.recv().await {
                let entries: BTreeMap<String, Vec<u8>> = pairs
                    .into_iter()
                    .filter_map(|p| Some((p.key.strip_prefix(prefix.as_str())?.to_string(), p.value)))
                    .collect();
                let prefix = prefix.clone();
                self.publish(idx, entries, move |n| format!("{prefix}{n}")).await;
            }
        };
        tokio::join!(watch, apply);
    }
}

/// How often a `dir:` store is looked at.
const DIR_POLL: Duration = Duration::from_secs(1);

/// The `.pem` files of a directory (not its subdirectories) with their
/// modification time and size, symlinks followed.
fn list_dir(path: &Path) -> Result<BTreeMap<String, (SystemTime, u64)>, String> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(path).map_err(|e| e.to_string())? {
        let entry = entry.map_err(|e| e.to_string())?;
        let Ok(name) = entry.file_name().into_string() else { continue };
        if !name.ends_with(".pem") {
            continue;
        }
        // Metadata through the symlink; a dangling one is skipped.
        let Ok(meta) = std::fs::metadata(entry.path()) else { continue };
        if meta.is_file() {
            out.insert(name, (meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), meta.len()));
        }
    }
    Ok(out)
}

fn read_files(dir: &Path, names: &[String]) -> BTreeMap<String, Vec<u8>> {
    names.iter().filter_map(|n| Some((n.clone(), std::fs::read(dir.join(n)).ok()?))).collect()
}
